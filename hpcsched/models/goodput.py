"""Goodput (throughput x statistical efficiency) and the batch configuration that maximises it.

For an allocation of ``num_replicas`` GPUs on ``num_nodes`` nodes the job-level scheduler picks
the local batch per GPU and the number of extra accumulation micro-steps; together they fix the
global batch ``M = num_replicas * local_bsz * (accum_steps + 1)``. A larger ``M`` raises
throughput (fixed costs and the all-reduce are amortised over more samples) but lowers the
progress each sample buys; goodput, in samples-at-``M0`` per second, weighs both:

    goodput = M / step_time * efficiency(M).

Search. For fixed ``accum_steps`` goodput is quasi-concave in ``local_bsz``: the numerator
``M * efficiency(M)`` is concave and non-decreasing in it, and the step time is convex and
positive (a ``kappa``-norm of the fixed and per-sample compute, itself inside a ``gamma``-norm
with the all-reduce, both exponents >= 1: norms of affine functions are convex), so every
super-level set ``{numerator - t * step_time >= 0}`` is an interval. Its maximum over the
integers is therefore where the sequence stops rising, found by bisection on the sign of
``goodput(l + 1) - goodput(l)`` in about ``log2(max_local_bsz)`` rounds. This runs for every
accumulation count and every candidate allocation at once as numpy arrays, which makes
:func:`speedup` cheap enough for a cluster allocator to call for many allocations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .efficiency import GradientNoise, statistical_efficiency
from .throughput import FloatArray, ThroughputParams, compute_time, network_time, overlap, predict_throughput

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BatchLimits:
    """What the job allows. ``min_global_bsz`` is ``M0``, the global batch its hyperparameters
    were tuned for: efficiency is measured relative to it and the batch never goes below it.
    ``max_local_bsz`` is the most samples one GPU fits in memory per micro-step."""

    min_global_bsz: int
    max_global_bsz: int
    max_local_bsz: int
    max_accum_steps: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_global_bsz <= self.max_global_bsz:
            raise ValueError(f"need 1 <= min_global_bsz <= max_global_bsz: {self}")
        if self.max_local_bsz < 1 or self.max_accum_steps < 0:
            raise ValueError(f"need max_local_bsz >= 1 and max_accum_steps >= 0: {self}")


@dataclass(frozen=True)
class BatchConfig:
    """The chosen split of the global batch and what the models predict for it."""

    global_bsz: int
    local_bsz: int
    accum_steps: int
    throughput: float
    efficiency: float

    @property
    def goodput(self) -> float:
        return self.throughput * self.efficiency


@dataclass(frozen=True)
class _Grid:
    """Candidate allocations (rows) x accumulation counts (columns), with the local batch range
    each cell allows; cells where no local batch fits have ``low > high``."""

    replicas: FloatArray
    network: FloatArray
    accum: FloatArray
    low: IntArray
    high: IntArray


def _grid(params: ThroughputParams, num_nodes: IntArray, num_replicas: IntArray, limits: BatchLimits) -> _Grid:
    replicas = num_replicas[:, None]
    accum = np.arange(limits.max_accum_steps + 1, dtype=np.int64)[None, :]
    per_local_sample = replicas * (accum + 1)
    low = np.maximum(-(-limits.min_global_bsz // per_local_sample), 1)
    high = np.minimum(limits.max_global_bsz // per_local_sample, limits.max_local_bsz)
    network = network_time(params, num_nodes[:, None], replicas)
    return _Grid(replicas.astype(np.float64), network, accum.astype(np.float64), low, high)


def _goodput(
    params: ThroughputParams, noise: GradientNoise, base_bsz: int, grid: _Grid, local: FloatArray, form: str
) -> FloatArray:
    compute = compute_time(params, local)
    step_time = grid.accum * compute + overlap(compute, grid.network, params.gamma)
    batch = grid.replicas * local * (grid.accum + 1.0)
    return np.asarray(batch / step_time * statistical_efficiency(noise, batch, base_bsz, form))


def _best_local_bsz(params: ThroughputParams, noise: GradientNoise, base_bsz: int, grid: _Grid, form: str) -> IntArray:
    """Per grid cell, the local batch in [low, high] where goodput stops rising (module doc)."""
    left = grid.low.copy()
    right = np.maximum(grid.high, grid.low)
    while np.any(active := left < right):
        mid = (left + right) // 2
        pair = _goodput(params, noise, base_bsz, grid, np.stack([mid, mid + 1]).astype(np.float64), form)
        falling = pair[1] <= pair[0]
        right = np.where(active & falling, mid, right)
        left = np.where(active & ~falling, mid + 1, left)
    return left


def _search(
    params: ThroughputParams,
    noise: GradientNoise,
    num_nodes: npt.ArrayLike,
    num_replicas: npt.ArrayLike,
    limits: BatchLimits,
    form: str = "sgd",
) -> tuple[FloatArray, IntArray, IntArray]:
    """Best (goodput, local_bsz, accum_steps) per allocation; goodput 0 where nothing fits."""
    nodes, replicas = np.broadcast_arrays(np.asarray(num_nodes, np.int64), np.asarray(num_replicas, np.int64))
    if np.any(nodes < 1) or np.any(replicas < nodes):
        raise ValueError("need 1 <= num_nodes <= num_replicas for every allocation")
    grid = _grid(params, nodes.ravel(), replicas.ravel(), limits)
    local = _best_local_bsz(params, noise, limits.min_global_bsz, grid, form)
    goodput = _goodput(params, noise, limits.min_global_bsz, grid, local.astype(np.float64), form)
    goodput = np.where(grid.low <= grid.high, goodput, 0.0)
    accum = np.argmax(goodput, axis=1)
    rows = np.arange(len(accum))
    shape = nodes.shape
    return goodput[rows, accum].reshape(shape), local[rows, accum].reshape(shape), accum.reshape(shape)


def max_goodput(
    params: ThroughputParams,
    noise: GradientNoise,
    num_nodes: npt.ArrayLike,
    num_replicas: npt.ArrayLike,
    limits: BatchLimits,
) -> FloatArray:
    """Goodput at the best batch configuration of each allocation (broadcast over both arrays);
    0 where no configuration fits the limits."""
    return _search(params, noise, num_nodes, num_replicas, limits)[0]


def best_config(
    params: ThroughputParams,
    noise: GradientNoise,
    num_nodes: int,
    num_replicas: int,
    limits: BatchLimits,
    form: str = "sgd",
) -> BatchConfig:
    """The (global batch, local batch, accumulation) with the highest goodput on this allocation,
    statistical efficiency in ``form`` (:func:`~.efficiency.statistical_efficiency`).

    Exact over every integer local batch and accumulation count within ``limits`` (up to ties).
    Raises ``ValueError`` if none fits, e.g. more replicas than ``max_global_bsz`` allows.
    """
    goodputs, locals_, accums = _search(params, noise, num_nodes, num_replicas, limits, form)
    goodput, local, accum = float(goodputs), int(locals_), int(accums)
    if goodput <= 0.0:
        raise ValueError(f"no batch configuration fits {limits} on {num_replicas} replicas")
    global_bsz = num_replicas * local * (accum + 1)
    return BatchConfig(
        global_bsz=global_bsz,
        local_bsz=local,
        accum_steps=accum,
        throughput=float(predict_throughput(params, num_nodes, num_replicas, local, accum)),
        efficiency=float(statistical_efficiency(noise, global_bsz, limits.min_global_bsz, form)),
    )


def speedup(
    params: ThroughputParams,
    noise: GradientNoise,
    num_nodes: npt.ArrayLike,
    num_replicas: npt.ArrayLike,
    limits: BatchLimits,
) -> FloatArray:
    """Best goodput of each allocation over the best goodput on one GPU (Pollux's SPEEDUP).

    Broadcasts over ``num_nodes`` and ``num_replicas``; 0 where the limits admit no batch on that
    allocation. Raises ``ValueError`` if the job does not fit on one GPU, since then there is no
    base to compare with (raise ``max_accum_steps`` or ``max_local_bsz``).
    """
    nodes, replicas = np.broadcast_arrays(np.asarray(num_nodes), np.asarray(num_replicas))
    goodput = max_goodput(params, noise, np.append(nodes, 1), np.append(replicas, 1), limits)
    if goodput[-1] <= 0.0:
        raise ValueError(f"the job does not fit on one GPU within {limits}")
    return np.asarray(goodput[:-1] / goodput[-1], np.float64).reshape(nodes.shape)
