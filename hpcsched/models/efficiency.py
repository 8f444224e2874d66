"""Statistical efficiency: how much training progress a sample buys at a given batch size.

Pollux (after McCandlish et al., 2018, "An Empirical Model of Large-Batch Training") measures it
with the gradient noise scale ``phi = tr(Sigma) / |g|^2``, where ``g`` is the true gradient and
``Sigma`` the covariance of one sample's gradient. With a well-tuned learning rate, one SGD step
on a batch of ``M`` samples reduces the loss by about ``dL_max / (1 + phi / M)``, so per sample
by ``dL_max / (M + phi)``. Relative to the batch size ``M0`` the job's hyperparameters were tuned
for, one sample at batch ``M`` is worth

    efficiency(M) = (phi + M0) / (phi + M)

samples at ``M0``: 1 at ``M = M0``, in (0, 1) for every larger batch, near 1 while ``M << phi``
(large batches are nearly free) and ``M0 / M`` once ``M >> phi`` (extra samples are wasted). It is
evaluated here as ``(var + sqr * M0) / (var + sqr * M)``, the same ratio multiplied through by
``sqr``, which stays defined when ``sqr`` is 0 (see :func:`statistical_efficiency`).

:class:`NoiseScaleEstimator` smooths the noisy per-step measurements of ``|g|^2`` and
``tr(Sigma)``; :func:`noise_from_micro_batches` turns the gradient norms a DDP job can cheaply
observe into one such measurement (:class:`NoiseMeasurement`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GradientNoise:
    """``grad_sqr = |g|^2`` and ``grad_var = tr(Sigma)`` of a single sample's gradient.

    Both are >= 0 (estimators clip when they report). The Pollux profiles (and AdaptDL) record the
    variance of a mean over the initial batch instead; :meth:`from_batch` converts.
    """

    grad_sqr: float
    grad_var: float

    def __post_init__(self) -> None:
        if not (self.grad_sqr >= 0.0 and self.grad_var >= 0.0):
            raise ValueError(f"grad_sqr and grad_var must be >= 0: {self}")
        if not (math.isfinite(self.grad_sqr) and math.isfinite(self.grad_var)):
            raise ValueError(f"grad_sqr and grad_var must be finite: {self}")

    @classmethod
    def from_batch(cls, grad_sqr: float, grad_var: float, batch_size: float) -> GradientNoise:
        """From the variance of a gradient averaged over ``batch_size`` samples, which is
        ``tr(Sigma) / batch_size``."""
        return cls(grad_sqr=max(grad_sqr, 0.0), grad_var=max(grad_var, 0.0) * batch_size)

    @property
    def noise_scale(self) -> float:
        """``phi`` in samples: infinite when only noise was measured, 0 without any noise."""
        if self.grad_var == 0.0:
            return 0.0
        return self.grad_var / self.grad_sqr if self.grad_sqr > 0.0 else math.inf


NO_NOISE_DATA = GradientNoise(grad_sqr=0.0, grad_var=0.0)


EFFICIENCY_FORMS = ("sgd", "sqrt")


def statistical_efficiency(
    noise: GradientNoise, batch_size: npt.ArrayLike, base_bsz: float, form: str = "sgd"
) -> FloatArray:
    """``(phi + M0) / (phi + M)`` for ``M = batch_size``, ``M0 = base_bsz`` (``form="sgd"``), or
    its square root (``form="sqrt"``).

    The square root is for an adaptive optimiser (Adam) whose learning rate grows with
    ``sqrt(M / M0)``: while noise dominates (``M << phi``) a sample is worth as much at any batch,
    as for SGD, but once the gradient dominates a step's progress grows with the learning rate,
    ``sqrt(M / M0)``, not with ``M / M0``, so a sample at ``M`` is worth ``sqrt(M0 / M)`` of one at
    ``M0`` where SGD's form gives ``M0 / M``; the root of SGD's form has both limits.

    Without any measurement (both terms 0) this returns ``M0 / M`` in either form: nothing is known
    to be gained from a larger batch, so a scheduler keeps ``M0`` until the job has measured its noise.
    """
    if form not in EFFICIENCY_FORMS:
        raise ValueError(f"unknown efficiency form {form!r}; use one of {', '.join(EFFICIENCY_FORMS)}")
    batch = np.asarray(batch_size, dtype=np.float64)
    if noise.grad_sqr == 0.0 and noise.grad_var == 0.0:
        return np.asarray(base_bsz / batch, np.float64)
    numerator = noise.grad_var + noise.grad_sqr * base_bsz
    value = numerator / (noise.grad_var + noise.grad_sqr * batch)
    return np.asarray(np.sqrt(value) if form == "sqrt" else value, np.float64)


def adascale_gain(noise: GradientNoise, batch_size: npt.ArrayLike, base_bsz: float) -> FloatArray:
    """AdaScale's gain ``r = (var + sqr) / (var / s + sqr)``, ``s = M / M0``, ``var`` the
    variance at ``M0``: how many ``M0``-steps of progress one step at ``M`` makes, in [1, s].

    It equals ``efficiency(M) * M / M0``; AdaScale multiplies the learning rate by it and counts
    training progress in ``M0``-steps, so a schedule written for ``M0`` carries over.
    """
    scale = np.asarray(batch_size, dtype=np.float64) / base_bsz
    return np.asarray(statistical_efficiency(noise, batch_size, base_bsz) * scale, np.float64)


@dataclass(frozen=True)
class NoiseMeasurement:
    """One step's unbiased estimates of ``|g|^2`` and ``tr(Sigma)`` (per sample).

    Either may be negative: single-step estimates are noisy, and clipping them before averaging
    would bias the average upwards. :class:`NoiseScaleEstimator` averages them and clips only
    the result.
    """

    grad_sqr: float
    grad_var: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grad_sqr) and math.isfinite(self.grad_var)):
            raise ValueError(f"noise measurements must be finite: {self}")


def noise_from_two_batch_sizes(small_sqr: float, small_bsz: float, big_sqr: float, big_bsz: float) -> NoiseMeasurement:
    """One measurement from the squared norms of two gradient means of different batch sizes.

    ``small_sqr`` estimates ``E|g_b|^2`` for a mean over ``b = small_bsz`` samples and
    ``big_sqr`` the same for ``B = big_bsz > b``. Since ``E|g_b|^2 = |g|^2 + tr(Sigma) / b``,
    the two give ``|g|^2`` and ``tr(Sigma)`` (McCandlish et al., appendix A).
    """
    small, big = float(small_bsz), float(big_bsz)
    if not 0.0 < small < big:
        raise ValueError(f"need 0 < small batch < big batch, got {small_bsz} and {big_bsz}")
    grad_sqr = (big * big_sqr - small * small_sqr) / (big - small)
    grad_var = (small_sqr - big_sqr) / (1.0 / small - 1.0 / big)
    return NoiseMeasurement(grad_sqr=grad_sqr, grad_var=grad_var)


def noise_from_micro_batches(
    micro_sqr_mean: float, total_sqr: float, micro_bsz: float, num_micro_batches: int
) -> NoiseMeasurement:
    """One measurement from gradients the job already computes.

    ``micro_sqr_mean`` is the mean of ``|g_i|^2`` over ``num_micro_batches`` gradients of
    ``micro_bsz`` samples each (one per replica and accumulation micro-step), ``total_sqr`` the
    squared norm of their average: :func:`noise_from_two_batch_sizes` with ``b = micro_bsz`` and
    ``B = num_micro_batches * b``. Needs two micro-batches.
    """
    if num_micro_batches < 2:
        raise ValueError("the noise scale needs at least two micro-batches per step")
    return noise_from_two_batch_sizes(micro_sqr_mean, micro_bsz, total_sqr, float(micro_bsz) * num_micro_batches)



def noise_from_consecutive_steps(first_sqr: float, second_sqr: float, dot: float, batch: float) -> NoiseMeasurement:
    """One measurement from two consecutive steps' gradients of ``batch`` samples each (squared
    norms and their dot product): the pair as two micro-batches of one step of ``2 * batch``."""
    return noise_from_micro_batches((first_sqr + second_sqr) / 2, (first_sqr + second_sqr + 2 * dot) / 4, batch, 2)

# Weight the noise estimate keeps per measurement: about the last 100 measurements count (400
# steps of a single process, which measures every 4th step; 100 of several replicas). One
# measurement's error is of the order of what it measures; at 0.9 the estimate, and with it the
# chosen batch, swung on every re-choice (docs/adaptive.md).
NOISE_SMOOTHING = 0.99


@dataclass(frozen=True)
class NoiseScaleEstimator:
    """Exponentially smoothed ``|g|^2`` and ``tr(Sigma)``; :meth:`update` returns a new value.

    Each term is averaged on its own (a ratio of averages; the average of per-step ratios is
    dominated by steps where ``|g|^2`` is near 0). ``smoothing`` is the weight kept by the old
    average per update; the averages start at 0 and are divided by ``1 - smoothing**n`` after
    ``n`` updates, so early estimates are not biased towards 0.
    """

    smoothing: float = NOISE_SMOOTHING
    sqr_average: float = 0.0
    var_average: float = 0.0
    weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1)")

    def update(self, measurement: NoiseMeasurement | GradientNoise) -> NoiseScaleEstimator:
        keep = self.smoothing
        return replace(
            self,
            sqr_average=keep * self.sqr_average + (1.0 - keep) * measurement.grad_sqr,
            var_average=keep * self.var_average + (1.0 - keep) * measurement.grad_var,
            weight=keep * self.weight + (1.0 - keep),
        )

    @property
    def estimate(self) -> GradientNoise:
        """The bias-corrected averages clipped at 0; :data:`NO_NOISE_DATA` before any update."""
        if self.weight == 0.0:
            return NO_NOISE_DATA
        sqr, var = self.sqr_average / self.weight, self.var_average / self.weight
        return GradientNoise(grad_sqr=max(sqr, 0.0), grad_var=max(var, 0.0))
