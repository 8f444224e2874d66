"""Step-time model: prediction properties, recovery of known constants, fits on real profiles."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import approx_fprime

from hpcsched.models import throughput_fit
from hpcsched.models.profiles import (
    observations_from_placements,
    observations_from_scalability,
    placement_shape,
)
from hpcsched.models.throughput import (
    Observation,
    ThroughputParams,
    compute_time,
    network_time,
    predict_step_time,
    predict_throughput,
)
from hpcsched.models.throughput_fit import DEFAULT_PRIOR, fit
from hpcsched.simulator.data import PACKAGED_DATA

SETTINGS = settings(derandomize=True, database=None, max_examples=200, deadline=None)

TRUE = ThroughputParams(alpha_c=0.02, beta_c=0.0005, alpha_n=0.08, beta_n=0.004, alpha_r=0.01, beta_r=0.002, gamma=1.8)

nonneg = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
params_strategy = st.builds(
    ThroughputParams,
    alpha_c=st.floats(min_value=1e-4, max_value=1.0),
    beta_c=nonneg,
    alpha_n=nonneg,
    beta_n=nonneg,
    alpha_r=nonneg,
    beta_r=nonneg,
    gamma=st.floats(min_value=1.0, max_value=10.0),
    kappa=st.floats(min_value=1.0, max_value=10.0),
)


def _configs() -> list[tuple[int, int, int, int]]:
    """1-4 nodes x 1, 2, 4 GPUs each x local batch 2..512 x 0 or 1 extra micro-steps."""
    return [
        (nodes, nodes * per_node, local, accum)
        for nodes in (1, 2, 3, 4)
        for per_node in (1, 2, 4)
        for local in (2, 8, 32, 128, 512)
        for accum in (0, 1)
    ]


def _columns(configs: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, ...]:
    return tuple(np.array(column) for column in zip(*configs, strict=True))


def _mape(params: ThroughputParams, observations: list[Observation]) -> float:
    configs = [(o.num_nodes, o.num_replicas, o.local_bsz, o.accum_steps) for o in observations]
    measured = np.array([o.step_time for o in observations])
    predicted = predict_step_time(params, *_columns(configs))
    return float(np.mean(np.abs(predicted - measured) / measured))


# --- prediction ---------------------------------------------------------------------------


def test_single_gpu_step_is_compute_only() -> None:
    assert float(predict_step_time(TRUE, 1, 1, 100, 0)) == pytest.approx(0.02 + 0.05)


def test_accumulation_adds_compute_only_micro_steps() -> None:
    one = float(predict_step_time(TRUE, 2, 8, 64, 0))
    four = float(predict_step_time(TRUE, 2, 8, 64, 3))
    assert four - one == pytest.approx(3 * (0.02 + 0.0005 * 64))


def test_gamma_one_adds_network_and_compute() -> None:
    params = ThroughputParams(0.1, 0.0, 0.3, 0.05, 0.1, 0.01, 1.0)
    assert float(predict_step_time(params, 2, 6, 10)) == pytest.approx(0.1 + 0.3 + 0.05 * 4)
    assert float(predict_step_time(params, 1, 2, 10)) == pytest.approx(0.1 + 0.1)


def test_large_gamma_approaches_perfect_overlap() -> None:
    params = ThroughputParams(0.1, 0.0, 0.3, 0.0, 0.1, 0.0, 10.0)
    assert float(predict_step_time(params, 2, 2, 10)) == pytest.approx(0.3, rel=1e-4)


def test_invalid_params_are_rejected() -> None:
    with pytest.raises(ValueError):
        ThroughputParams(0.1, -0.1, 0.0, 0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        ThroughputParams(0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 0.5)
    with pytest.raises(ValueError):
        ThroughputParams(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@SETTINGS
@given(
    params=params_strategy,
    nodes=st.integers(1, 16),
    per_node=st.integers(1, 8),
    local=st.integers(1, 4096),
    accum=st.integers(0, 8),
)
def test_throughput_does_not_fall_with_local_batch(
    params: ThroughputParams, nodes: int, per_node: int, local: int, accum: int
) -> None:
    replicas = nodes * per_node
    smaller = float(predict_throughput(params, nodes, replicas, local, accum))
    larger = float(predict_throughput(params, nodes, replicas, local + 1, accum))
    assert larger >= smaller * (1 - 1e-12)


@SETTINGS
@given(params=params_strategy, gpus_per_node=st.integers(1, 8), local=st.integers(1, 4096))
def test_step_time_does_not_fall_with_replicas(params: ThroughputParams, gpus_per_node: int, local: int) -> None:
    """Holds both with the node count fixed and when more replicas spill onto more nodes, since
    inter-node constants are never below intra-node ones in fitted params (see fit)."""
    params = ThroughputParams(
        params.alpha_c,
        params.beta_c,
        max(params.alpha_n, params.alpha_r),
        max(params.beta_n, params.beta_r),
        params.alpha_r,
        params.beta_r,
        params.gamma,
        params.kappa,
    )
    replicas = np.arange(1, 65)
    nodes = -(-replicas // gpus_per_node)
    spread = predict_step_time(params, nodes, replicas, local)
    one_node = predict_step_time(params, 1, replicas, local)
    fixed_nodes = predict_step_time(params, 4, np.arange(4, 65), local)
    for times in (spread, one_node, fixed_nodes):
        assert np.all(np.diff(times) >= -1e-12 * times[1:])


def test_kappa_bends_compute_into_a_hinge() -> None:
    """kappa = 1 adds the fixed and per-sample parts; a large kappa is flat at alpha_c while the
    host's kernel launches dominate, then alpha_c-free linear once the device does."""
    linear = dataclasses.replace(TRUE, alpha_c=0.01, beta_c=0.001)
    hinge = dataclasses.replace(linear, kappa=8.0)
    assert float(compute_time(linear, 10)) == pytest.approx(0.02)
    assert float(compute_time(hinge, 2)) == pytest.approx(0.01, rel=1e-3)
    assert float(compute_time(hinge, 100)) == pytest.approx(0.1, rel=1e-3)
    assert float(compute_time(hinge, 10)) == pytest.approx(0.01 * 2 ** (1 / 8))


@SETTINGS
@given(params=params_strategy, local=st.integers(2, 4096))
def test_compute_time_is_convex_in_the_local_batch(params: ThroughputParams, local: int) -> None:
    """The goodput search's bisection relies on it (hpcsched.models.goodput)."""
    left, mid, right = (float(compute_time(params, b)) for b in (local - 1, local, local + 1))
    assert left + right >= 2 * mid * (1 - 1e-12)


def test_network_time_is_zero_on_one_gpu() -> None:
    assert float(network_time(TRUE, 1, 1)) == 0.0


# --- fitting: synthetic ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_known_params_from_noisy_times(seed: int) -> None:
    """60 of 120 configurations, each timed with 3% log-normal noise.

    Tolerances: held-out predictions against the noise-free truth within 2% on average and 10%
    at worst (3% noise averaged over 60 fits gives well under 1% typical error; the worst cases
    are single-node all-reduces hidden under compute by the overlap). Constants the design pins
    down (compute line, inter-node line, gamma) within 15%, 1.6x the worst (9%) over six seeds.
    The intra-node pair is not checked one by one: only 2- and 4-GPU single-node runs inform it
    and their all-reduce hides mostly under compute, so alpha_r and beta_r trade off freely
    (errors up to 30% in both directions at the same fit quality).
    """
    rng = np.random.default_rng(seed)
    configs = _configs()
    order = rng.permutation(len(configs))
    train = [configs[i] for i in order[:60]]
    held_out = [configs[i] for i in order[60:]]
    noisy = predict_step_time(TRUE, *_columns(train)) * np.exp(rng.normal(0.0, 0.03, len(train)))
    observations = [Observation(n, r, b, a, float(t)) for (n, r, b, a), t in zip(train, noisy, strict=True)]
    fitted = fit(observations)
    truth = predict_step_time(TRUE, *_columns(held_out))
    error = np.abs(predict_step_time(fitted, *_columns(held_out)) / truth - 1.0)
    assert error.mean() <= 0.02
    assert error.max() <= 0.10
    for name in ("alpha_c", "beta_c", "alpha_n", "beta_n", "gamma"):
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE, name), rel=0.15), name


def test_fit_uses_compute_times_when_given() -> None:
    configs = [(1, 1, local, 0) for local in (8, 64, 256)] + [(2, 8, 64, 0), (4, 16, 8, 0)]
    observations = [Observation(*c, float(predict_step_time(TRUE, *c)), compute_time=0.02 + 5e-4 * c[2]) for c in configs]
    fitted = fit(observations)
    assert fitted.alpha_c == pytest.approx(0.02, rel=0.02)
    assert fitted.beta_c == pytest.approx(0.0005, rel=0.02)


def test_single_observation_gives_a_finite_sublinear_model() -> None:
    fitted = fit([Observation(1, 1, 32, 0, step_time=0.1)])
    assert float(predict_step_time(fitted, 1, 1, 32)) == pytest.approx(0.1, rel=1e-3)
    # The prior splits the time 35/65 into fixed and per-sample compute.
    assert fitted.alpha_c == pytest.approx(0.035, rel=0.01)
    replicas = np.array([2, 4, 8, 16])
    speedups = predict_throughput(fitted, [1, 1, 2, 4], replicas, 32) / (32 / 0.1)
    assert np.all(np.isfinite(speedups))
    assert np.all(speedups > 1.0)
    # Every all-reduce costs something, and crossing nodes more than staying on one.
    assert np.all(speedups < 0.95 * replicas)
    assert speedups[2] / speedups[1] < speedups[1] / speedups[0]


def test_single_gpu_data_leaves_the_network_at_the_prior() -> None:
    observations = [Observation(1, 1, local, 0, step_time=0.01 + 0.001 * local) for local in (8, 16, 32)]
    fitted = fit(observations)
    tau = 0.01 + 0.001 * 16
    assert fitted.alpha_c == pytest.approx(0.01, rel=0.02)
    assert fitted.alpha_r == pytest.approx(DEFAULT_PRIOR.alpha_r * tau, rel=1e-3)
    assert fitted.beta_n == pytest.approx(DEFAULT_PRIOR.beta_n * tau, rel=1e-3)
    assert fitted.gamma == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_recovers_a_hinged_compute_time(seed: int) -> None:
    """A launch-bound GPU: flat up to ~64 samples, linear beyond (the ResNet shape measured on a
    real GPU, benchmarks/gpu_calibration.py). With 3% noise, leave-one-out predictions of every
    batch size stay within 5% of the truth, and the fit finds the bend (kappa well above 1)."""
    truth = ThroughputParams(alpha_c=0.007, beta_c=2e-5 * 5, alpha_n=0.0, beta_n=0.0, alpha_r=0.0, beta_r=0.0,
                             gamma=1.0, kappa=3.0)  # fmt: skip
    rng = np.random.default_rng(seed)
    batches = [8, 16, 32, 64, 128, 256, 512, 1024]
    observations = [
        Observation(1, 1, b, a, float(predict_step_time(truth, 1, 1, b, a)) * float(np.exp(rng.normal(0.0, 0.03))))
        for b in batches for a in (0, 1)
    ]  # fmt: skip
    errors = []
    for held in observations:
        fitted = fit([o for o in observations if o is not held])
        exact = float(predict_step_time(truth, 1, 1, held.local_bsz, held.accum_steps))
        errors.append(abs(float(predict_step_time(fitted, 1, 1, held.local_bsz, held.accum_steps)) / exact - 1.0))
    assert max(errors) <= 0.05
    assert fit(observations).kappa >= 2.0


def test_fit_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    configs = _configs()[::7]
    observations = [Observation(n, r, b, a, float(t), compute_time=float(t) / (a + 2))
                    for (n, r, b, a), t in zip(configs, rng.uniform(0.01, 0.5, len(configs)), strict=True)]  # fmt: skip
    data = throughput_fit._measurements(observations)
    z = np.array([0.3, 0.7, 0.4, 0.05, 1.2, 0.08, 1.7, 2.3])
    _, gradient = throughput_fit._objective(z, data, DEFAULT_PRIOR)
    numeric = approx_fprime(z, lambda v: throughput_fit._objective(v, data, DEFAULT_PRIOR)[0], 1e-7)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-6)


def test_fit_needs_observations() -> None:
    with pytest.raises(ValueError):
        fit([])


@settings(derandomize=True, database=None, max_examples=15, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 4),
            st.integers(1, 4),
            st.integers(1, 1024),
            st.integers(0, 3),
            st.floats(min_value=1e-4, max_value=10.0),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_fit_of_arbitrary_times_is_valid(rows: list[tuple[int, int, int, int, float]]) -> None:
    """Whatever the measurements, the result is a valid (non-negative) model with finite
    predictions: ThroughputParams refuses anything else on construction."""
    observations = [Observation(n, n * per, local, acc, t) for n, per, local, acc, t in rows]
    fitted = fit(observations)
    assert math.isfinite(float(predict_step_time(fitted, 16, 64, 1024, 3)))


# --- fitting: the real Pollux profiles ------------------------------------------------------

# The profiles shipped with the package, never $HPCSCHED_POLLUX_DATA: the tests read nothing
# outside the repository.
POLLUX = PACKAGED_DATA / "traces"

# Held-out MAPE of seed 0 as measured by benchmarks/model_accuracy.py (same splits). Each test
# allows the measurement plus 15% of it: room for solver and platform differences, not for a
# worse model; held-out rows of the random split must also meet the 10% target.
MEASURED_SPLIT_MAPE = {
    "bert": 0.0625,
    "cifar10": 0.0713,
    "deepspeech2": 0.0779,
    "imagenet": 0.0700,
    "ncf": 0.0928,
    "yolov3": 0.0910,
}
TARGET_MAPE = 0.10
MEASURED_EXTRAPOLATION_MAPE = {
    "bert": 0.0538,
    "cifar10": 0.0805,
    "deepspeech2": 0.1975,
    "imagenet": 0.0844,
    "ncf": 0.1054,
    "yolov3": 0.1809,
}


def _half(rows: list[Observation], seed: int) -> tuple[list[Observation], list[Observation]]:
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = len(rows) // 2
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def _profiles(model: str) -> tuple[list[Observation], list[Observation]]:
    placements = observations_from_placements((POLLUX / model / "placements.csv").read_text())
    scalability = observations_from_scalability((POLLUX / model / "scalability.csv").read_text())
    return placements, scalability


def test_placement_digits_are_gpus_per_node() -> None:
    assert placement_shape("1122") == (4, 6)
    assert placement_shape("4") == (1, 4)


@pytest.mark.parametrize("model", sorted(MEASURED_SPLIT_MAPE))
def test_fit_predicts_held_out_half_of_real_profile(model: str) -> None:
    placements, scalability = _profiles(model)
    train, held_out = _half(placements + scalability, seed=0)
    assert _mape(fit(train), held_out) <= min(MEASURED_SPLIT_MAPE[model] * 1.15, TARGET_MAPE)


@pytest.mark.parametrize("model", sorted(MEASURED_EXTRAPOLATION_MAPE))
def test_fit_on_small_allocations_predicts_large_ones(model: str) -> None:
    """Fit on half the placements (<= 4 nodes, <= 16 GPUs), predict all of scalability.csv
    (6-16 nodes, up to 64 GPUs). The bounds are loose for deepspeech2 and yolov3: beyond 16
    GPUs their measured all-reduce grows more slowly than the linear (replicas - 2) term fitted
    below 16 predicts, so the model overestimates large allocations (docs/models.md)."""
    placements, scalability = _profiles(model)
    fitted = fit(_half(placements, seed=0)[0])
    assert _mape(fitted, scalability) <= MEASURED_EXTRAPOLATION_MAPE[model] * 1.15
