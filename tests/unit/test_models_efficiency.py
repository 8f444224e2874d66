"""Statistical efficiency, the noise-scale estimator and learning-rate scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcsched.models.efficiency import (
    NO_NOISE_DATA,
    GradientNoise,
    NoiseMeasurement,
    NoiseScaleEstimator,
    adascale_gain,
    noise_from_micro_batches,
    statistical_efficiency,
)
from hpcsched.models.learning_rate import adascale_lr, sqrt_scaled_lr

SETTINGS = settings(derandomize=True, database=None, max_examples=300, deadline=None)

# Zero or normal floats: with subnormal inputs the reference formula below itself rounds wrongly.
term = st.one_of(st.just(0.0), st.floats(min_value=1e-12, max_value=1e12))
noise_strategy = st.builds(GradientNoise, grad_sqr=term, grad_var=term)


@SETTINGS
@given(noise=noise_strategy, base=st.integers(1, 10_000), factor=st.floats(1.0, 1e4))
def test_efficiency_is_in_zero_one_and_one_at_the_base_batch(noise: GradientNoise, base: int, factor: float) -> None:
    assert float(statistical_efficiency(noise, base, base)) == pytest.approx(1.0)
    efficiency = float(statistical_efficiency(noise, base * factor, base))
    assert 0.0 < efficiency <= 1.0


@SETTINGS
@given(noise=noise_strategy, base=st.integers(1, 1000))
def test_efficiency_does_not_rise_with_batch_size(noise: GradientNoise, base: int) -> None:
    batches = base * np.geomspace(1.0, 1e4, 50)
    efficiency = statistical_efficiency(noise, batches, base)
    assert np.all(np.diff(efficiency) <= 1e-12)


def test_efficiency_is_pollux_formula_in_noise_scale() -> None:
    noise = GradientNoise(grad_sqr=2.0, grad_var=600.0)
    phi = noise.noise_scale
    assert phi == 300.0
    assert float(statistical_efficiency(noise, 1000, 100)) == pytest.approx((phi + 100) / (phi + 1000))


def test_efficiency_limits() -> None:
    assert float(statistical_efficiency(GradientNoise(1.0, 0.0), 400, 100)) == pytest.approx(0.25)
    assert float(statistical_efficiency(GradientNoise(0.0, 1.0), 400, 100)) == 1.0
    assert float(statistical_efficiency(NO_NOISE_DATA, 400, 100)) == pytest.approx(0.25)


def test_noise_scale_edge_cases() -> None:
    assert GradientNoise(0.0, 1.0).noise_scale == math.inf
    assert GradientNoise(1.0, 0.0).noise_scale == 0.0
    assert NO_NOISE_DATA.noise_scale == 0.0


def test_from_batch_converts_variance_of_a_mean_to_per_sample() -> None:
    noise = GradientNoise.from_batch(grad_sqr=8.9, grad_var=5.0, batch_size=128)
    assert noise.grad_var == pytest.approx(640.0)
    assert GradientNoise.from_batch(-1.0, -1.0, 128) == NO_NOISE_DATA


def test_negative_or_infinite_terms_are_rejected() -> None:
    with pytest.raises(ValueError):
        GradientNoise(-1.0, 0.0)
    with pytest.raises(ValueError):
        GradientNoise(1.0, math.inf)


@SETTINGS
@given(noise=noise_strategy, base=st.integers(1, 1000), factor=st.floats(1.0, 1e4))
def test_adascale_gain_matches_its_definition_and_range(noise: GradientNoise, base: int, factor: float) -> None:
    """r = (var + sqr) / (var / s + sqr) with var the variance at M0, and 1 <= r <= s."""
    batch = base * factor
    gain = float(adascale_gain(noise, batch, base))
    var_at_base = noise.grad_var / base
    denominator = var_at_base / factor + noise.grad_sqr
    if denominator > 0.0 and var_at_base + noise.grad_sqr < 1e300:
        assert gain == pytest.approx((var_at_base + noise.grad_sqr) / denominator, rel=1e-9)
    assert 1.0 - 1e-9 <= gain <= factor * (1.0 + 1e-9)


def test_micro_batch_estimate_is_unbiased() -> None:
    """Simulated micro-batch gradients with |g|^2 = 4 and tr(Sigma) = 200 (per sample)."""
    rng = np.random.default_rng(7)
    dim, micro_bsz, count, steps = 50, 16, 8, 4000
    true_gradient = np.full(dim, 2.0 / math.sqrt(dim))
    sigma = math.sqrt(200.0 / dim)
    estimates = []
    for _ in range(steps):
        micro = true_gradient + rng.normal(0.0, sigma / math.sqrt(micro_bsz), (count, dim))
        micro_sqr = float(np.mean(np.sum(micro**2, axis=1)))
        total_sqr = float(np.sum(micro.mean(axis=0) ** 2))
        estimates.append(noise_from_micro_batches(micro_sqr, total_sqr, micro_bsz, count))
    assert np.mean([e.grad_sqr for e in estimates]) == pytest.approx(4.0, rel=0.05)
    assert np.mean([e.grad_var for e in estimates]) == pytest.approx(200.0, rel=0.05)


def test_micro_batch_estimate_needs_two_batches() -> None:
    with pytest.raises(ValueError):
        noise_from_micro_batches(1.0, 1.0, 32, 1)


def test_estimator_starts_empty_and_is_unbiased_after_one_update() -> None:
    empty = NoiseScaleEstimator(smoothing=0.9)
    assert empty.estimate == NO_NOISE_DATA
    once = empty.update(GradientNoise(2.0, 50.0))
    assert once.estimate.grad_sqr == pytest.approx(2.0)
    assert once.estimate.grad_var == pytest.approx(50.0)
    assert empty.estimate == NO_NOISE_DATA  # update returned a new value


def test_estimator_averages_negative_measurements_and_clips_only_the_result() -> None:
    estimator = NoiseScaleEstimator(smoothing=0.5).update(NoiseMeasurement(-1.0, 40.0))
    assert estimator.estimate == GradientNoise(0.0, 40.0)
    estimator = estimator.update(NoiseMeasurement(3.0, 40.0))
    # (0.5 * -1 * 0.5 + 0.5 * 3) / 0.75 = 5 / 3: the negative step still counts
    assert estimator.estimate.grad_sqr == pytest.approx(5.0 / 3.0)


def test_estimator_follows_a_change_exponentially() -> None:
    estimator = NoiseScaleEstimator(smoothing=0.5)
    for _ in range(20):
        estimator = estimator.update(GradientNoise(1.0, 10.0))
    for _ in range(3):
        estimator = estimator.update(GradientNoise(1.0, 90.0))
    # after three updates at 0.5, 1/8 of the weight is still on the old value
    assert estimator.estimate.grad_var == pytest.approx(10.0 / 8 + 90.0 * 7 / 8, rel=1e-3)


def test_estimator_smooths_noisy_measurements() -> None:
    rng = np.random.default_rng(3)
    estimator = NoiseScaleEstimator(smoothing=0.99)
    for _ in range(2000):
        estimator = estimator.update(GradientNoise(max(rng.normal(1.0, 0.5), 0.0), max(rng.normal(100.0, 50.0), 0.0)))
    assert estimator.estimate.noise_scale == pytest.approx(100.0, rel=0.15)


def test_sqrt_scaling() -> None:
    assert sqrt_scaled_lr(0.1, 400, 100) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        sqrt_scaled_lr(0.1, 0, 100)


def test_adascale_lr_between_unchanged_and_linear() -> None:
    assert adascale_lr(0.1, NO_NOISE_DATA, 400, 100) == pytest.approx(0.1)
    assert adascale_lr(0.1, GradientNoise(0.0, 5.0), 400, 100) == pytest.approx(0.4)
    noise = GradientNoise(1.0, 300.0)  # phi = 300: gain (300 + 100) / (300 + 400) * 4
    assert adascale_lr(0.1, noise, 400, 100) == pytest.approx(0.1 * 400 / 700 * 4)
