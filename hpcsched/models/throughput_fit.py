"""Estimating :class:`ThroughputParams` from measured step times, with a prior for what the
measurements leave open.

Method. The fit minimises the sum of squared errors of *log* step time (and of log compute time
where that was measured) plus a weak penalty pulling each constant towards the prior:

    sum_i (log predicted_i - log measured_i)^2 + weight * sum_k (log(z_k + e) - log(prior_k + e))^2

Log errors because timing noise is multiplicative and one job's step times span two orders of
magnitude across allocations: a 5% miss on a 10 ms step counts as much as on a 1 s step, which is
what the allocator's speedup ratios need. Everything is first expressed in relative units (times
in ``tau``, the median measured micro-step time, batch in the median local batch) so the same
prior and tolerances fit a 7 ms recommender step and a 1 s BERT step. L-BFGS-B with bounds keeps
the constants non-negative and both exponents, ``gamma`` and ``kappa``, in [1, 10]; the inter-node constants are parametrised as
non-negative excesses over the intra-node ones, so crossing a node boundary never makes a step
faster and step time never falls as replicas are added. The gradient is analytic (the data term
is cheap but a finite-difference gradient costs nine evaluations) and the search starts at
several ``gamma`` and ``kappa`` because the exponents make the objective non-convex.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeResult, minimize

from .throughput import FloatArray, Observation, ThroughputParams


@dataclass(frozen=True)
class ThroughputPrior:
    """What :func:`fit` assumes where the measurements say nothing, in relative units.

    Times are multiples of ``tau``, the median measured time of one micro-step (``beta_r`` and
    ``beta_n`` per replica beyond two); ``compute_overhead`` is the share of a micro-step at the
    median local batch that does not grow with the batch (``alpha_c``).

    The defaults lean to caution without assuming the worst. Before a job has run on several
    GPUs, an all-reduce within a node is assumed to cost 0.1 ``tau`` plus 0.02 ``tau`` per replica
    beyond two, across nodes 0.5 ``tau`` plus 0.02 ``tau`` per replica, with no overlap
    (``gamma = 1``): near the smallest values fitted to the six Pollux profiles, relative to their
    single-GPU step, where the earlier defaults sat at the largest (0.5, 0.1, 2.0, 0.1) and Pollux
    assumes zero. A compute overhead of 35% splits a step between fixed and per-sample time.
    These values were picked by the tuning run on Pollux workloads 1-4 at 1.0x load
    (benchmarks/tune_allocator.py: the lowest average JCT with at most 3 restarts per job), where
    the largest values made jobs climb so slowly under the growth cap that GPUs stayed idle
    (docs/models.md). An unmeasured job's predicted speedup stays finite and above 1, and
    ``kappa = 1`` adds the two compute parts (Pollux's linear compute time) until several batch
    sizes show a hinge. ``weight`` multiplies the squared log-ratios; the data term sums over
    observations, so a few measurements outweigh it.
    """

    compute_overhead: float = 0.35
    alpha_r: float = 0.1
    beta_r: float = 0.02
    alpha_n: float = 0.5
    beta_n: float = 0.02
    gamma: float = 1.0
    kappa: float = 1.0
    weight: float = 1e-3

    def __post_init__(self) -> None:
        if not 0.0 < self.compute_overhead < 1.0:
            raise ValueError("compute_overhead must be in (0, 1)")
        if self.alpha_n < self.alpha_r or self.beta_n < self.beta_r:
            raise ValueError("the inter-node prior must not be cheaper than the intra-node prior")
        if min(self.alpha_r, self.beta_r, self.weight) < 0.0 or min(self.gamma, self.kappa) < 1.0:
            raise ValueError("prior values must be >= 0, gamma and kappa >= 1")

    def vector(self) -> FloatArray:
        """The prior in the fit's parameter order (see :func:`_relative_params`)."""
        return np.array(
            [
                self.compute_overhead,
                1.0 - self.compute_overhead,
                self.alpha_r,
                self.beta_r,
                self.alpha_n - self.alpha_r,
                self.beta_n - self.beta_r,
                self.gamma,
                self.kappa,
            ]
        )


DEFAULT_PRIOR = ThroughputPrior()
# Pollux's own fit (its artifact's ``fit_perf_params``) pins what it has not observed at the
# optimistic end: no all-reduce cost until a job has run on several GPUs of a node, or on several
# nodes, and, from one local batch size, half of the compute time fixed per step. The simulator's
# Pollux policies fit with it (same code, Pollux's assumption); hpcsched's daemon keeps the
# more cautious default.
POLLUX_PRIOR = ThroughputPrior(compute_overhead=0.5, alpha_r=0.0, beta_r=0.0, alpha_n=0.0, beta_n=0.0)

# Inside the prior's log-ratios the six time constants are offset by this many tau, so a
# constant may be zero (the exponents, >= 1, need no offset).
_PRIOR_OFFSET = np.array([0.01] * 6 + [0.0, 0.0])
# Lower bound of alpha_c in tau: keeps every prediction, and so its logarithm, positive.
_MIN_ALPHA_C = 1e-6
_BOUNDS = [(_MIN_ALPHA_C, None)] + [(0.0, None)] * 5 + [(1.0, 10.0)] * 2
_EXPONENT_STARTS = ((1.0, 1.0), (2.0, 1.0), (4.0, 1.0), (1.0, 3.0))  # (gamma, kappa)


@dataclass(frozen=True)
class _Measurements:
    """Observations as arrays in relative units: time / tau, local batch / batch_unit."""

    tau: float
    batch_unit: float
    multi: npt.NDArray[np.bool_]
    across: npt.NDArray[np.bool_]
    ring: FloatArray
    local: FloatArray
    accum: FloatArray
    log_step: FloatArray
    has_compute: npt.NDArray[np.bool_]
    log_compute: FloatArray


def _measurements(observations: Sequence[Observation]) -> _Measurements:
    def column(name: str) -> FloatArray:
        return np.array([getattr(o, name) for o in observations], np.float64)

    tau = float(np.median(column("step_time") / (column("accum_steps") + 1.0)))
    batch_unit = float(np.median(column("local_bsz")))
    replicas = column("num_replicas")
    compute = np.array([o.compute_time or np.nan for o in observations], np.float64)
    has_compute = np.isfinite(compute)
    return _Measurements(
        tau=tau,
        batch_unit=batch_unit,
        multi=replicas > 1,
        across=(replicas > 1) & (column("num_nodes") > 1),
        ring=np.maximum(replicas - 2.0, 0.0),
        local=column("local_bsz") / batch_unit,
        accum=column("accum_steps"),
        log_step=np.log(column("step_time") / tau),
        has_compute=has_compute,
        log_compute=np.log(np.where(has_compute, compute, tau) / tau),
    )


def _relative_params(z: FloatArray) -> ThroughputParams:
    """Vector ``(alpha_c, beta_c, alpha_r, beta_r, extra_alpha_n, extra_beta_n, gamma, kappa)``
    -> params in relative units."""
    alpha_c, beta_c, alpha_r, beta_r, extra_alpha_n, extra_beta_n, gamma, kappa = (float(v) for v in z)
    return ThroughputParams(
        alpha_c=alpha_c,
        beta_c=beta_c,
        alpha_n=alpha_r + extra_alpha_n,
        beta_n=beta_r + extra_beta_n,
        alpha_r=alpha_r,
        beta_r=beta_r,
        gamma=gamma,
        kappa=kappa,
    )


@dataclass(frozen=True)
class _Norm:
    """``h = (a**p + b**p) ** (1/p)`` and its partial derivatives by ``a``, ``b`` and ``p``:
    ``dh/da = (a/h)**(p-1)`` (likewise ``b``) and ``dh/dp = h * (sum x**p log x / (p q) - log q / p**2)``
    with ``x`` the terms over the larger one and ``q = sum x**p`` (scaled so large ``p`` cannot
    overflow). ``a`` and ``b`` are >= 0, one of them positive."""

    value: FloatArray
    by_a: FloatArray
    by_b: FloatArray
    by_p: FloatArray

    @classmethod
    def of(cls, a: FloatArray, b: FloatArray, p: float) -> _Norm:
        larger = np.maximum(a, b)
        u, v = a / larger, b / larger
        q = u**p + v**p
        value = larger * q ** (1.0 / p)

        def x_log_x(x: FloatArray) -> FloatArray:
            return np.where(x > 0.0, x**p * np.log(np.where(x > 0.0, x, 1.0)), 0.0)

        d_log_q = (x_log_x(u) + x_log_x(v)) / (p * q) - np.log(q) / p**2
        return cls(value, (a / value) ** (p - 1.0), (b / value) ** (p - 1.0), value * d_log_q)


def _compute(z: FloatArray, data: _Measurements) -> tuple[_Norm, FloatArray]:
    """The micro-step's compute time per observation, and its derivatives by ``z`` (rows x 8)."""
    compute = _Norm.of(np.full_like(data.local, z[0]), z[1] * data.local, float(z[7]))
    jacobian = np.zeros((len(data.local), 8))
    jacobian[:, 0] = compute.by_a
    jacobian[:, 1] = compute.by_b * data.local
    jacobian[:, 7] = compute.by_p
    return compute, jacobian


def _log_step_time(z: FloatArray, data: _Measurements) -> tuple[FloatArray, FloatArray]:
    """Predicted log step time per observation and its derivatives by ``z`` (rows x 8).

    Same model as :func:`hpcsched.models.throughput.predict_step_time`, written out so that each
    derivative is visible (:class:`_Norm` for the two exponents).
    """
    _, _, alpha_r, beta_r, extra_alpha_n, extra_beta_n, gamma, _ = z
    compute, compute_jacobian = _compute(z, data)
    network = np.where(data.multi, alpha_r + beta_r * data.ring, 0.0)
    network = network + np.where(data.across, extra_alpha_n + extra_beta_n * data.ring, 0.0)
    combined = _Norm.of(compute.value, network, float(gamma))
    step = data.accum * compute.value + combined.value
    by_compute = data.accum + combined.by_a
    jacobian = by_compute[:, None] * compute_jacobian
    jacobian[:, 2] = combined.by_b * data.multi
    jacobian[:, 3] = combined.by_b * data.multi * data.ring
    jacobian[:, 4] = combined.by_b * data.across
    jacobian[:, 5] = combined.by_b * data.across * data.ring
    jacobian[:, 6] = combined.by_p
    return np.log(step), jacobian / step[:, None]


def _log_compute_time(z: FloatArray, data: _Measurements) -> tuple[FloatArray, FloatArray]:
    compute, jacobian = _compute(z, data)
    return np.log(compute.value), jacobian / compute.value[:, None]


def _objective(z: FloatArray, data: _Measurements, prior: ThroughputPrior) -> tuple[float, FloatArray]:
    """The fit's loss (module docstring) and its gradient."""
    log_step, step_jacobian = _log_step_time(z, data)
    step_error = log_step - data.log_step
    log_compute, compute_jacobian = _log_compute_time(z, data)
    compute_error = np.where(data.has_compute, log_compute - data.log_compute, 0.0)
    prior_error = np.log(z + _PRIOR_OFFSET) - np.log(prior.vector() + _PRIOR_OFFSET)
    loss = np.sum(step_error**2) + np.sum(compute_error**2) + prior.weight * np.sum(prior_error**2)
    gradient = 2.0 * (
        step_error @ step_jacobian + compute_error @ compute_jacobian + prior.weight * prior_error / (z + _PRIOR_OFFSET)
    )
    return float(loss), gradient


def _minimise(start: FloatArray, data: _Measurements, prior: ThroughputPrior) -> OptimizeResult:
    return minimize(_objective, start, args=(data, prior), jac=True, method="L-BFGS-B", bounds=_BOUNDS)


def fit(observations: Sequence[Observation], prior: ThroughputPrior | None = None) -> ThroughputParams:
    """Estimate :class:`ThroughputParams` from measured step times (method: module docstring).

    Where the data leaves a constant undetermined (single-GPU runs say nothing about the network,
    one batch size nothing about how compute splits into ``alpha_c`` and ``beta_c``) the prior
    decides it, so even one observation yields a usable, cautious model. Raises ``ValueError``
    when there are no observations.
    """
    if not observations:
        raise ValueError("fit needs at least one observation")
    prior = prior or DEFAULT_PRIOR
    data = _measurements(observations)
    starts = [np.append(prior.vector()[:-2], exponents) for exponents in _EXPONENT_STARTS]
    best = min((_minimise(start, data, prior) for start in starts), key=lambda r: float(r.fun))
    relative = _relative_params(np.asarray(best.x, np.float64))
    return ThroughputParams(
        alpha_c=relative.alpha_c * data.tau,
        beta_c=relative.beta_c * data.tau / data.batch_unit,
        alpha_n=relative.alpha_n * data.tau,
        beta_n=relative.beta_n * data.tau,
        alpha_r=relative.alpha_r * data.tau,
        beta_r=relative.beta_r * data.tau,
        gamma=relative.gamma,
        kappa=relative.kappa,
    )
