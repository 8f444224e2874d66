"""Goodput search: exact over the allowed grid, within the limits, and consistent with speedup."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hpcsched.models.efficiency import NO_NOISE_DATA, GradientNoise, statistical_efficiency
from hpcsched.models.goodput import BatchLimits, best_config, max_goodput, speedup
from hpcsched.models.throughput import ThroughputParams, predict_throughput

SETTINGS = settings(derandomize=True, database=None, max_examples=300, deadline=None)

PARAMS = ThroughputParams(alpha_c=0.017, beta_c=0.00066, alpha_n=0.05, beta_n=0.002, alpha_r=0.01, beta_r=0.001, gamma=2.0)
NOISE = GradientNoise(grad_sqr=1.0, grad_var=2000.0)


def positive(high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=0.0, max_value=high, allow_nan=False)


params_strategy = st.builds(
    ThroughputParams,
    alpha_c=st.floats(min_value=1e-4, max_value=1.0),
    beta_c=positive(0.01),
    alpha_n=positive(1.0),
    beta_n=positive(0.1),
    alpha_r=positive(1.0),
    beta_r=positive(0.1),
    gamma=st.floats(min_value=1.0, max_value=10.0),
    kappa=st.floats(min_value=1.0, max_value=10.0),
)
noise_strategy = st.builds(GradientNoise, grad_sqr=positive(10.0), grad_var=positive(1e5))


@st.composite
def limits_strategy(draw: st.DrawFn) -> BatchLimits:
    low = draw(st.integers(1, 512))
    return BatchLimits(
        min_global_bsz=low,
        max_global_bsz=draw(st.integers(low, 8192)),
        max_local_bsz=draw(st.integers(1, 96)),
        max_accum_steps=draw(st.integers(0, 4)),
    )


def brute_force(params: ThroughputParams, noise: GradientNoise, nodes: int, replicas: int, limits: BatchLimits) -> float:
    """Highest goodput over every (local batch, accumulation) the limits allow; 0 if none."""
    local = np.arange(1, limits.max_local_bsz + 1)[:, None]
    accum = np.arange(limits.max_accum_steps + 1)[None, :]
    batch = replicas * local * (accum + 1)
    allowed = (batch >= limits.min_global_bsz) & (batch <= limits.max_global_bsz)
    goodput = predict_throughput(params, nodes, replicas, local, accum) * statistical_efficiency(
        noise, batch, limits.min_global_bsz
    )
    return float(np.max(np.where(allowed, goodput, 0.0)))


@SETTINGS
@given(
    params=params_strategy,
    noise=noise_strategy,
    limits=limits_strategy(),
    nodes=st.integers(1, 4),
    per_node=st.integers(1, 4),
)
def test_no_allowed_config_beats_best_config(
    params: ThroughputParams, noise: GradientNoise, limits: BatchLimits, nodes: int, per_node: int
) -> None:
    replicas = nodes * per_node
    best = brute_force(params, noise, nodes, replicas, limits)
    assume(best > 0.0)
    chosen = best_config(params, noise, nodes, replicas, limits)
    assert chosen.goodput >= best * (1 - 1e-9)
    assert chosen.global_bsz == replicas * chosen.local_bsz * (chosen.accum_steps + 1)
    assert limits.min_global_bsz <= chosen.global_bsz <= limits.max_global_bsz
    assert 1 <= chosen.local_bsz <= limits.max_local_bsz
    assert 0 <= chosen.accum_steps <= limits.max_accum_steps
    assert 0.0 < chosen.efficiency <= 1.0


@SETTINGS
@given(params=params_strategy, noise=noise_strategy, limits=limits_strategy())
def test_vectorised_goodput_matches_brute_force(params: ThroughputParams, noise: GradientNoise, limits: BatchLimits) -> None:
    nodes = np.array([1, 1, 2, 3, 4])
    replicas = np.array([1, 4, 2, 9, 16])
    expected = [brute_force(params, noise, n, r, limits) for n, r in zip(nodes, replicas, strict=True)]
    assert max_goodput(params, noise, nodes, replicas, limits) == pytest.approx(expected, rel=1e-9)


def test_no_noise_data_keeps_the_base_batch() -> None:
    limits = BatchLimits(128, 4096, 512, max_accum_steps=3)
    chosen = best_config(PARAMS, NO_NOISE_DATA, 1, 1, limits)
    assert (chosen.global_bsz, chosen.accum_steps, chosen.efficiency) == (128, 0, 1.0)


def test_pure_noise_takes_the_largest_batch_that_fits() -> None:
    limits = BatchLimits(128, 4096, 512, max_accum_steps=0)
    chosen = best_config(PARAMS, GradientNoise(0.0, 1.0), 2, 4, limits)
    assert (chosen.local_bsz, chosen.global_bsz) == (512, 2048)


def test_accumulation_reaches_batches_beyond_memory() -> None:
    limits = BatchLimits(64, 4096, 32, max_accum_steps=7)
    chosen = best_config(PARAMS, GradientNoise(1.0, 1e5), 1, 1, limits)
    assert chosen.accum_steps > 0
    assert chosen.global_bsz > 32


def test_too_many_replicas_for_the_largest_batch() -> None:
    limits = BatchLimits(8, 16, 8)
    with pytest.raises(ValueError):
        best_config(PARAMS, NOISE, 8, 32, limits)
    assert float(speedup(PARAMS, NOISE, 8, 32, limits)) == 0.0


def test_speedup_is_relative_to_one_gpu_and_vectorised() -> None:
    limits = BatchLimits(128, 8192, 512, max_accum_steps=2)
    nodes = np.array([[1, 1], [2, 4]])
    replicas = np.array([[1, 4], [8, 16]])
    result = speedup(PARAMS, NOISE, nodes, replicas, limits)
    assert result.shape == (2, 2)
    assert result[0, 0] == pytest.approx(1.0)
    base = best_config(PARAMS, NOISE, 1, 1, limits).goodput
    for n, r, s in zip(nodes.ravel(), replicas.ravel(), result.ravel(), strict=True):
        assert s == pytest.approx(best_config(PARAMS, NOISE, int(n), int(r), limits).goodput / base)


def test_speedup_grows_sublinearly_for_a_noisy_job() -> None:
    limits = BatchLimits(128, 65536, 512)
    replicas = np.array([1, 2, 4, 8, 16])
    result = speedup(PARAMS, NOISE, np.maximum(replicas // 4, 1), replicas, limits)
    assert np.all(result[1:] > 1.0)
    assert np.all(result <= replicas + 1e-9)


def test_speedup_needs_a_job_that_fits_on_one_gpu() -> None:
    with pytest.raises(ValueError):
        speedup(PARAMS, NOISE, 1, 4, BatchLimits(1024, 4096, 256, max_accum_steps=0))


def test_invalid_limits_and_allocations_are_rejected() -> None:
    with pytest.raises(ValueError):
        BatchLimits(256, 128, 64)
    with pytest.raises(ValueError):
        max_goodput(PARAMS, NOISE, 3, 2, BatchLimits(1, 128, 64))
