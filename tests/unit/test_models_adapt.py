"""The job-level choice of batch configuration (hpcsched.models.adapt), on synthetic step times."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcsched.models import BatchLimits, GradientNoise, Observation, ThroughputParams, best_config, predict_step_time
from hpcsched.models.adapt import SWITCH_GAIN, choose, initial_config, lr_factor
from hpcsched.models.efficiency import (
    NO_NOISE_DATA,
    NOISE_SMOOTHING,
    NoiseScaleEstimator,
    noise_from_two_batch_sizes,
    statistical_efficiency,
)

# A job whose fixed per-step cost dominates at small batches: a larger batch is nearly free.
OVERHEAD_BOUND = ThroughputParams(alpha_c=0.010, beta_c=0.0001, alpha_n=0.004, beta_n=0.001, alpha_r=0.002,
                                  beta_r=0.0005, gamma=1.5)  # fmt: skip
LIMITS = BatchLimits(min_global_bsz=32, max_global_bsz=1024, max_local_bsz=256, max_accum_steps=3)
NOISY = GradientNoise(grad_sqr=1.0, grad_var=2000.0)  # noise scale 2000: large batches lose little
CLEAN = GradientNoise(grad_sqr=1.0, grad_var=10.0)  # noise scale 10: every sample beyond M0 is wasted


def measured(params: ThroughputParams, configs: list[tuple[int, int, int, int]]) -> list[Observation]:
    return [
        Observation(
            num_nodes=n, num_replicas=r, local_bsz=b, accum_steps=a, step_time=float(predict_step_time(params, n, r, b, a))
        )
        for n, r, b, a in configs
    ]


def test_without_step_times_the_job_starts_at_its_tuned_batch() -> None:
    choice = choose([], NOISY, num_nodes=1, num_replicas=2, limits=LIMITS)
    assert (choice.local_bsz, choice.accum_steps, choice.global_bsz, choice.reason) == (16, 0, 32, "initial")
    assert choice.lr_factor == 1.0


def test_initial_config_accumulates_when_one_process_cannot_hold_the_batch() -> None:
    limits = BatchLimits(min_global_bsz=100, max_global_bsz=400, max_local_bsz=30, max_accum_steps=3)
    assert initial_config(1, limits) == (25, 3)
    assert initial_config(2, limits) == (25, 1)
    with pytest.raises(ValueError, match="no batch configuration"):
        initial_config(1, BatchLimits(min_global_bsz=100, max_global_bsz=400, max_local_bsz=10, max_accum_steps=3))


def test_one_batch_size_measured_explores_a_larger_one_when_the_noise_allows() -> None:
    seen = measured(OVERHEAD_BOUND, [(1, 1, 32, 0)])
    choice = choose(seen, NOISY, num_nodes=1, num_replicas=1, limits=LIMITS)
    assert (choice.reason, choice.local_bsz) == ("explore", 64)
    # Without a noise measurement, or with a noise scale that makes any larger batch wasteful, it stays.
    assert choose(seen, NO_NOISE_DATA, num_nodes=1, num_replicas=1, limits=LIMITS).global_bsz == 32
    assert choose(seen, GradientNoise(grad_sqr=1.0, grad_var=0.0), num_nodes=1, num_replicas=1,
                  limits=LIMITS).global_bsz == 32  # fmt: skip


def test_with_two_batch_sizes_measured_it_picks_the_goodput_optimum() -> None:
    seen = measured(OVERHEAD_BOUND, [(1, 1, 32, 0), (1, 1, 64, 0), (1, 2, 64, 0)])
    choice = choose(seen, NOISY, num_nodes=1, num_replicas=2, limits=LIMITS)
    assert choice.reason == "goodput"
    exact = best_config(OVERHEAD_BOUND, NOISY, 1, 2, LIMITS)
    assert choice.global_bsz == pytest.approx(exact.global_bsz, rel=0.25)  # the fit is close to the truth
    assert choice.global_bsz > 4 * LIMITS.min_global_bsz
    assert choice.lr_factor == pytest.approx(math.sqrt(choice.global_bsz / 32))
    clean = choose(seen, CLEAN, num_nodes=1, num_replicas=2, limits=LIMITS)
    assert clean.global_bsz < choice.global_bsz  # less noise, smaller batch


def test_a_near_equal_gain_keeps_the_current_configuration() -> None:
    seen = measured(OVERHEAD_BOUND, [(1, 1, 32, 0), (1, 1, 64, 0)])
    best = choose(seen, NOISY, num_nodes=1, num_replicas=1, limits=LIMITS)
    near = (best.local_bsz - 1, best.accum_steps)
    kept = choose(seen, NOISY, num_nodes=1, num_replicas=1, limits=LIMITS, current=near)
    assert (kept.reason, kept.local_bsz) == ("keep", best.local_bsz - 1)
    far = choose(seen, NOISY, num_nodes=1, num_replicas=1, limits=LIMITS, current=(32, 0))
    assert (far.reason, far.local_bsz) == ("goodput", best.local_bsz)


def test_learning_rate_rules() -> None:
    assert lr_factor("sqrt", NOISY, 128, 32) == pytest.approx(2.0)
    assert lr_factor("none", NOISY, 128, 32) == 1.0
    # AdaScale: almost linear while noise dominates, almost 1 when it does not.
    assert lr_factor("adascale", NOISY, 128, 32) == pytest.approx(3.8, rel=0.05)
    assert lr_factor("adascale", GradientNoise(grad_sqr=1.0, grad_var=1.0), 128, 32) == pytest.approx(1.02, rel=0.01)
    assert lr_factor("adascale", NO_NOISE_DATA, 128, 32) == 1.0
    with pytest.raises(ValueError, match="unknown learning-rate rule 'linear'"):
        choose([], NOISY, num_nodes=1, num_replicas=1, limits=LIMITS, lr_rule="linear")


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(1, 8),
    base=st.integers(1, 64),
    extra=st.integers(0, 512),
    max_local=st.integers(1, 128),
    accum=st.integers(0, 4),
    noise_scale=st.floats(0.0, 1e4),
)
def test_choices_stay_within_the_limits(replicas: int, base: int, extra: int, max_local: int, accum: int,
                                        noise_scale: float) -> None:  # fmt: skip
    limits = BatchLimits(min_global_bsz=base, max_global_bsz=base + extra, max_local_bsz=max_local, max_accum_steps=accum)
    try:
        initial_config(replicas, limits)
    except ValueError:
        return  # nothing fits: choose raises the same error
    seen = measured(OVERHEAD_BOUND, [(1, 1, 8, 0), (1, 1, 16, 0)])
    noise = GradientNoise(grad_sqr=1.0, grad_var=noise_scale)
    nodes = max(1, replicas // 2)
    choice = choose(seen, noise, num_nodes=nodes, num_replicas=replicas, limits=limits)
    assert limits.min_global_bsz <= choice.global_bsz <= limits.max_global_bsz
    assert 1 <= choice.local_bsz <= limits.max_local_bsz and 0 <= choice.accum_steps <= limits.max_accum_steps
    assert choice.global_bsz == replicas * choice.local_bsz * (choice.accum_steps + 1)
    assert 0.0 < choice.efficiency <= 1.0 and choice.lr_factor >= 1.0


def _chosen_batches(noise_scale: float, error: float, seed: int, switch_gain: float, smoothing: float) -> list[int]:
    """The global batch after each of 30 re-choices of a single process that measures its noise
    12 times in between (every 4th of 50 steps), each measured squared norm off by ``error``
    (relative, Gaussian), as a real job's are."""
    rng = np.random.default_rng(seed)
    seen = measured(OVERHEAD_BOUND, [(1, 1, b, 0) for b in (32, 64, 128, 256, 512)])
    limits = BatchLimits(min_global_bsz=32, max_global_bsz=1024, max_local_bsz=1024, max_accum_steps=0)
    estimator, current, batches = NoiseScaleEstimator(smoothing=smoothing), None, []
    for _ in range(30):
        big = current[0] if current else 32
        for _ in range(12):
            small_sqr, big_sqr = (1.0 + noise_scale / b for b in (big // 2, big))
            noisy = [value * (1.0 + error * rng.standard_normal()) for value in (small_sqr, big_sqr)]
            estimator = estimator.update(noise_from_two_batch_sizes(noisy[0], big // 2, noisy[1], big))
        choice = choose(seen, estimator.estimate, num_nodes=1, num_replicas=1, limits=limits, current=current,
                        switch_gain=switch_gain)  # fmt: skip
        current, batches = (choice.local_bsz, choice.accum_steps), [*batches, choice.global_bsz]
    return batches


def _changes(batches: list[int]) -> int:
    return sum(1 for before, after in itertools.pairwise(batches) if before != after)


@pytest.mark.parametrize("noise_scale", [100.0, 300.0, 1000.0])
def test_noisy_noise_measurements_do_not_make_the_batch_flap(noise_scale: float) -> None:
    """A real job's noise measurements are each off by about a third; its batch must settle, not
    swing between small and large on every re-choice (it did at 0.9 smoothing and a 5% gain)."""
    true_noise = GradientNoise(grad_sqr=1.0, grad_var=noise_scale)
    limits = BatchLimits(min_global_bsz=32, max_global_bsz=1024, max_local_bsz=1024, max_accum_steps=0)
    best = best_config(OVERHEAD_BOUND, true_noise, 1, 1, limits)

    def goodput(batch: int) -> float:
        return batch / float(predict_step_time(OVERHEAD_BOUND, 1, 1, batch, 0)) * float(
            statistical_efficiency(true_noise, batch, 32))

    for seed in range(3):
        batches = _chosen_batches(noise_scale, 0.3, seed, SWITCH_GAIN, NOISE_SMOOTHING)
        settled = batches[5:]
        assert _changes(settled) <= 2, batches
        # Where it settles is near the optimum for the true noise: within the switch gain, and then some.
        assert goodput(settled[-1]) >= goodput(best.global_bsz) / (SWITCH_GAIN * 1.1), (settled[-1], best.global_bsz)
    # The old constants on the same measurements: the scenario is one that made the batch flap.
    old = [_chosen_batches(noise_scale, 0.3, seed, 1.05, 0.9)[5:] for seed in range(3)]
    assert max(_changes(run) for run in old) >= 5


def test_the_square_root_efficiency_values_large_batches_more_and_keeps_both_limits() -> None:
    noise = GradientNoise(grad_sqr=1.0, grad_var=150.0)  # the search task's noise scale, about 150
    sgd = statistical_efficiency(noise, [16, 256, 512], 16)
    root = statistical_efficiency(noise, [16, 256, 512], 16, "sqrt")
    assert root == pytest.approx(np.sqrt(sgd))
    assert root[0] == 1.0 and np.all(root[1:] > sgd[1:])
    # all noise: every sample counts fully in both forms; no noise: SGD wastes M0 / M, Adam sqrt(M0 / M)
    assert statistical_efficiency(GradientNoise(1e-12, 1.0), 512, 16, "sqrt") == pytest.approx(1.0)
    assert statistical_efficiency(GradientNoise(1.0, 0.0), 400, 16, "sqrt") == pytest.approx(0.2)
    # nothing measured: nothing is known to be gained, in either form
    assert statistical_efficiency(NO_NOISE_DATA, 64, 16, "sqrt") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="efficiency form"):
        statistical_efficiency(noise, 64, 16, "linear")


def test_with_the_square_root_efficiency_a_step_that_costs_the_same_at_any_batch_goes_larger() -> None:
    # A step costs about the same at every batch (an accelerator a small batch leaves idle).
    flat = ThroughputParams(alpha_c=0.030, beta_c=0.000002, alpha_n=0.0, beta_n=0.0, alpha_r=0.0, beta_r=0.0, gamma=1.0)
    limits = BatchLimits(min_global_bsz=16, max_global_bsz=512, max_local_bsz=512, max_accum_steps=0)
    seen = measured(flat, [(1, 1, 16, 0), (1, 1, 32, 0), (1, 1, 64, 0), (1, 1, 128, 0), (1, 1, 256, 0)])
    noise = GradientNoise(grad_sqr=1.0, grad_var=150.0)
    sgd = choose(seen, noise, num_nodes=1, num_replicas=1, limits=limits, current=(256, 0))
    root = choose(seen, noise, num_nodes=1, num_replicas=1, limits=limits, current=(256, 0), efficiency="sqrt")
    assert (sgd.reason, sgd.global_bsz) == ("keep", 256)  # SGD's form: 512 gains less than SWITCH_GAIN
    assert (root.reason, root.global_bsz) == ("goodput", 512)
    assert root.efficiency == pytest.approx(math.sqrt(166 / 662))
    with pytest.raises(ValueError, match="efficiency form"):
        choose(seen, noise, num_nodes=1, num_replicas=1, limits=limits, efficiency="adam")
