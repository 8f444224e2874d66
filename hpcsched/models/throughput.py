"""How long one optimizer step takes for a given allocation and batch split (Pollux's model).

One optimizer step on ``num_replicas`` GPUs spread over ``num_nodes`` nodes, with ``local_bsz``
samples per GPU per micro-step and ``accum_steps`` extra micro-steps of gradient accumulation:

* compute of one micro-step, a fixed part and a part linear in the local batch, combined through
  a second exponent ``kappa >= 1``: ``c = (alpha_c**kappa + (beta_c * local_bsz)**kappa) ** (1 /
  kappa)``. At ``kappa = 1`` (Pollux's form) that is ``alpha_c + beta_c * local_bsz``; a larger
  ``kappa`` bends it into a hinge: flat at ``alpha_c`` while the accelerator waits for the host to
  launch its kernels (small batches), then ``beta_c`` per sample once the device is the
  bottleneck. Real GPUs and CPUs show that shape (docs/models.md, benchmarks/gpu_calibration.py);
  it stays convex in the local batch, which the goodput search relies on;
* all-reduce of the gradients, zero on one GPU, otherwise a ring all-reduce whose cost grows with
  the number of replicas, with separate constants inside one node (``alpha_r, beta_r``) and across
  nodes (``alpha_n, beta_n``): ``n = alpha + beta * (num_replicas - 2)``;
* the all-reduce overlaps with the backward pass of the last micro-step, which ``gamma >= 1``
  captures: ``(c**gamma + n**gamma) ** (1 / gamma)`` is ``c + n`` at ``gamma = 1`` (no overlap) and
  tends to ``max(c, n)`` as ``gamma`` grows (perfect overlap);
* the ``accum_steps`` earlier micro-steps only compute, so

      step_time = accum_steps * c + (c**gamma + n**gamma) ** (1 / gamma).

Convention used throughout ``hpcsched.models``: ``accum_steps`` counts the *extra* micro-steps, so
one optimizer step processes ``num_replicas * local_bsz * (accum_steps + 1)`` samples.

All functions broadcast over numpy arrays, so an allocator can evaluate many candidates at once;
scalars come back as 0-d arrays (``float(...)`` them). :mod:`.throughput_fit` estimates the
constants from measured step times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ThroughputParams:
    """Fitted constants of the step-time model, in seconds (``beta_c`` in seconds per sample).

    All are non-negative, ``gamma >= 1`` and ``kappa >= 1``; compute time at one sample, ``alpha_c + beta_c``, must
    be positive so that no prediction is zero. Constructing an invalid value raises ``ValueError``.
    """

    alpha_c: float
    beta_c: float
    alpha_n: float
    beta_n: float
    alpha_r: float
    beta_r: float
    gamma: float
    kappa: float = 1.0

    def __post_init__(self) -> None:
        values = (self.alpha_c, self.beta_c, self.alpha_n, self.beta_n, self.alpha_r, self.beta_r)
        if not all(math.isfinite(v) and v >= 0.0 for v in values):
            raise ValueError(f"throughput parameters must be finite and >= 0: {self}")
        if not (math.isfinite(self.gamma) and self.gamma >= 1.0):
            raise ValueError(f"gamma must be finite and >= 1: {self.gamma}")
        if not (math.isfinite(self.kappa) and self.kappa >= 1.0):
            raise ValueError(f"kappa must be finite and >= 1: {self.kappa}")
        if self.alpha_c + self.beta_c <= 0.0:
            raise ValueError("compute time per micro-step must be positive")


@dataclass(frozen=True)
class Observation:
    """One measured configuration: the mean time of an optimizer step at that configuration.

    ``compute_time`` is optional: the time of one compute-only micro-step (no all-reduce), which
    the runtime can time directly during accumulation micro-steps, or derive as step time minus
    synchronisation time as the Pollux profiles do. When present it pins the compute line apart
    from the network terms.
    """

    num_nodes: int
    num_replicas: int
    local_bsz: int
    accum_steps: int
    step_time: float
    compute_time: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.num_nodes <= self.num_replicas:
            raise ValueError(f"need 1 <= num_nodes <= num_replicas: {self}")
        if self.local_bsz < 1 or self.accum_steps < 0:
            raise ValueError(f"need local_bsz >= 1 and accum_steps >= 0: {self}")
        if not (math.isfinite(self.step_time) and self.step_time > 0.0):
            raise ValueError(f"step_time must be positive: {self}")
        if self.compute_time is not None and not (math.isfinite(self.compute_time) and self.compute_time > 0.0):
            raise ValueError(f"compute_time must be positive when given: {self}")

    @property
    def global_bsz(self) -> int:
        return self.num_replicas * self.local_bsz * (self.accum_steps + 1)


def compute_time(params: ThroughputParams, local_bsz: npt.ArrayLike) -> FloatArray:
    """Time of one forward/backward micro-step on one GPU, without communication."""
    per_sample = params.beta_c * np.asarray(local_bsz, dtype=np.float64)
    if params.kappa == 1.0:  # the common case, and the allocator's inner loop: skip the powers
        return np.asarray(params.alpha_c + per_sample, np.float64)
    return overlap(np.full_like(per_sample, params.alpha_c), per_sample, params.kappa)


def network_time(params: ThroughputParams, num_nodes: npt.ArrayLike, num_replicas: npt.ArrayLike) -> FloatArray:
    """Time of the gradient all-reduce: zero for one replica, the slower link's line otherwise.

    Several nodes use the inter-node constants even if most replicas share a node: a ring
    all-reduce runs at the pace of its slowest hop.
    """
    nodes = np.asarray(num_nodes, dtype=np.float64)
    replicas = np.asarray(num_replicas, dtype=np.float64)
    across = nodes > 1
    alpha = np.where(across, params.alpha_n, params.alpha_r)
    beta = np.where(across, params.beta_n, params.beta_r)
    ring = alpha + beta * np.maximum(replicas - 2.0, 0.0)
    return np.where(replicas > 1, ring, 0.0)


def overlap(compute: FloatArray, network: FloatArray, gamma: float) -> FloatArray:
    """``(compute**gamma + network**gamma) ** (1/gamma)``, scaled by the larger term so large
    ``gamma`` cannot overflow or underflow. Both are >= 0 and one of them positive everywhere."""
    larger = np.maximum(compute, network)
    ratio_c = compute / larger
    ratio_n = network / larger
    return np.asarray(larger * (ratio_c**gamma + ratio_n**gamma) ** (1.0 / gamma), np.float64)


def predict_step_time(
    params: ThroughputParams,
    num_nodes: npt.ArrayLike,
    num_replicas: npt.ArrayLike,
    local_bsz: npt.ArrayLike,
    accum_steps: npt.ArrayLike = 0,
) -> FloatArray:
    """Seconds per optimizer step (see the module docstring for the formula)."""
    compute = compute_time(params, local_bsz)
    network = network_time(params, num_nodes, num_replicas)
    last = overlap(compute, network, params.gamma)
    return np.asarray(np.asarray(accum_steps, dtype=np.float64) * compute + last, np.float64)


def predict_throughput(
    params: ThroughputParams,
    num_nodes: npt.ArrayLike,
    num_replicas: npt.ArrayLike,
    local_bsz: npt.ArrayLike,
    accum_steps: npt.ArrayLike = 0,
) -> FloatArray:
    """Samples per second: the global batch of one optimizer step divided by its time."""
    replicas = np.asarray(num_replicas, dtype=np.float64)
    local = np.asarray(local_bsz, dtype=np.float64)
    steps = np.asarray(accum_steps, dtype=np.float64) + 1.0
    step_time = predict_step_time(params, num_nodes, num_replicas, local_bsz, accum_steps)
    return np.asarray(replicas * local * steps / step_time, np.float64)
