"""The sizes each job may take and what the models predict for each of them.

Sizes are GPU counts; a job of ``g`` GPUs is placed on ``ceil(g / gpus_per_node)`` nodes (whole
nodes plus at most one partial node), which is what the step-time model is evaluated at. Every
size up to four nodes is a candidate (that is where one GPU more or less matters); beyond that
only whole nodes, and beyond sixteen nodes a geometric grid (steps of about 12%), so that a job
allowed 2,048 GPUs costs the allocator some 60 goodput evaluations, not 2,048. A job's current
size, minimum and maximum are always candidates, on the grid or not. ``whole_nodes`` jobs (the
real cluster, where a Slurm job owns its nodes) only take multiples of ``gpus_per_node``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hpcsched.models.goodput import max_goodput

from .cluster import Cluster, Limits
from .jobs import ElasticJob, GoodputModel

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_FINE_NODES = 4
_DENSE_NODES = 16
_GRID_STEP = 1.125


def _node_grid(low: int, high: int) -> list[int]:
    counts, n = [], max(low, 1)
    while n <= high:
        counts.append(n)
        n = n + 1 if n < _DENSE_NODES else max(n + 1, round(n * _GRID_STEP))
    return counts


def size_grid(gpus_per_node: int, top: int, whole_nodes: bool) -> tuple[int, ...]:
    """Every size a job may take on this cluster, ascending, before its own range applies."""
    if whole_nodes:
        return tuple(n * gpus_per_node for n in _node_grid(1, top // gpus_per_node))
    fine = range(1, min(top, _FINE_NODES * gpus_per_node) + 1)
    coarse = [n * gpus_per_node for n in _node_grid(_FINE_NODES + 1, top // gpus_per_node)]
    return tuple(sorted({*fine, *coarse}))


def _high(job: ElasticJob, cluster: Cluster, limits: Limits) -> int:
    high = min(job.max_gpus, cluster.capacity)
    if limits.max_nodes_per_job is not None:
        high = min(high, limits.max_nodes_per_job * cluster.gpus_per_node)
    return high


@functools.lru_cache(maxsize=1 << 14)
def _grid_goodputs(model: GoodputModel, gpus_per_node: int, top: int, whole_nodes: bool) -> tuple[IntArray, FloatArray]:
    """Goodput on the whole size grid; memoised because the simulator asks for the same model
    (same application, same noise bucket) round after round and job after job."""
    replicas = np.array(size_grid(gpus_per_node, top, whole_nodes), dtype=np.int64)
    values = max_goodput(model.params, model.noise, -(-replicas // gpus_per_node), replicas, model.limits)
    return replicas, np.asarray(values, np.float64)


@functools.lru_cache(maxsize=1 << 14)
def goodput_at(model: GoodputModel, gpus_per_node: int, gpus: int) -> float:
    """The model's best goodput on ``gpus`` GPUs packed on nodes of ``gpus_per_node``."""
    return float(max_goodput(model.params, model.noise, -(-gpus // gpus_per_node), gpus, model.limits))


def clear_caches() -> None:
    """Forget memoised goodputs (benchmarks measure cold rounds)."""
    _grid_goodputs.cache_clear()
    goodput_at.cache_clear()


@dataclass(frozen=True)
class JobTable:
    """A job's feasible candidate sizes (ascending) with their goodput (samples at M0 per second)."""

    sizes: IntArray
    nodes: IntArray
    goodput: FloatArray

    def remaining_time(self, remaining_work: float) -> FloatArray:
        """Predicted seconds to finish at each size; ``inf`` when the work is unknown."""
        if math.isinf(remaining_work):
            return np.full(len(self.sizes), math.inf)
        return np.asarray(remaining_work / self.goodput, np.float64)

    def index_of(self, gpus: int) -> int:
        """Position of ``gpus`` among the sizes, or -1 if it is not a candidate."""
        hits = np.flatnonzero(self.sizes == gpus)
        return int(hits[0]) if len(hits) else -1


def job_table(job: ElasticJob, cluster: Cluster, limits: Limits) -> JobTable:
    """The job's candidates within its range, the per-job node limit and the capacity, with a
    positive goodput. Its current size is added when it is within range but off the grid, so
    that keeping it is always an option (the top of its range is added likewise)."""
    high = _high(job, cluster, limits)
    sizes, goodput = _grid_goodputs(job.model, cluster.gpus_per_node, cluster.capacity, job.whole_nodes)
    keep = (sizes >= job.min_gpus) & (sizes <= high)
    sizes, goodput = sizes[keep], goodput[keep]
    per_node = cluster.gpus_per_node
    for extra in {job.current_gpus, high, job.min_gpus}:
        off_grid = extra not in sizes and job.min_gpus <= extra <= high
        if off_grid and (not job.whole_nodes or extra % per_node == 0):
            at = int(np.searchsorted(sizes, extra))
            sizes = np.insert(sizes, at, extra)
            goodput = np.insert(goodput, at, goodput_at(job.model, per_node, extra))
    positive = goodput > 0.0
    sizes = sizes[positive]
    return JobTable(sizes, -(-sizes // per_node), goodput[positive])
