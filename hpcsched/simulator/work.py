"""Run-time predictions from the true models: how long a job takes at a fixed size.

Used where the simulation needs a job's duration rather than its rate: the Philly mapping (work
that takes a recorded time), FIFO backfill (Slurm backfills with run-time estimates; the static
baseline is given exact ones, which flatters it), and the fairness reference (a job alone on its
fair share).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .applications import Application
from .jobs import Config, SimJob, adaptive_config, bucket, fixed_config, true_rate
from .workload import JobSpec

FloatArray = np.ndarray


@functools.lru_cache(maxsize=1 << 14)
def _epoch_seconds(app: Application, gpus_per_node: int, gpus: int, config: Config | None) -> tuple[float, ...]:
    """Seconds per epoch at ``gpus`` GPUs with ``config`` (``None``: re-tuned every epoch, as an
    adaptive job is), for the application's own total work."""
    nodes = -(-gpus // gpus_per_node)
    widths = np.diff(np.concatenate(([0.0], app.epoch_ends)))
    seconds = []
    for epoch, width in enumerate(widths):
        chosen = config or adaptive_config(app, bucket(app.noise(app.base_bsz, epoch)), nodes, gpus)
        seconds.append(float(width) / true_rate(app, app.params, nodes, gpus, chosen, epoch))
    return tuple(seconds)


def run_time(app: Application, gpus_per_node: int, gpus: int, config: Config | None) -> float:
    """Seconds for the whole training at a fixed size."""
    return sum(_epoch_seconds(app, gpus_per_node, gpus, config))


def fixed_duration_work(app: Application, spec: JobSpec, gpus_per_node: int) -> float:
    """Work (samples at M0) that takes ``spec.duration_s`` on the job's GPUs at its batch size."""
    assert spec.duration_s is not None
    config = fixed_config(app, spec.num_replicas, spec.batch_size)
    return app.total_work * spec.duration_s / run_time(app, gpus_per_node, spec.num_replicas, config)


def remaining_time(job: SimJob, gpus: int, config: Config) -> float:
    """Predicted seconds ``job`` still needs at ``gpus`` with a fixed ``config``, pause included."""
    seconds = _epoch_seconds(job.app, job.gpus_per_node, gpus, config)
    scale = job.total_work / job.app.total_work
    start = job.epoch_end(job.epoch - 1) if job.epoch else 0.0
    width = job.epoch_end(job.epoch) - start
    left_in_epoch = (job.epoch_end(job.epoch) - job.work_done) / width if width > 0 else 0.0
    return job.pause_left + scale * (seconds[job.epoch] * left_in_epoch + sum(seconds[job.epoch + 1 :]))


def time_alone(job: SimJob, share: float, max_gpus: Callable[[SimJob], int]) -> float:
    """Seconds the job needs alone on ``share`` GPUs at its best configuration: on
    ``floor(share)`` GPUs (at most the job's maximum) if the share is at least one GPU, otherwise
    on one GPU slowed by the share (time-slicing)."""
    gpus = max(1, min(int(share), max_gpus(job)))
    seconds = run_time(job.app, job.gpus_per_node, gpus, None) * job.total_work / job.app.total_work
    return seconds / share if share < 1.0 else seconds
