"""Run-time predictions from the true models: how long a job takes at a fixed size.

Used where the simulation needs a job's duration rather than its rate: the Philly mapping (work
that takes a recorded time), the time limits Slurm backfills with (exact ones, which flatters
the Slurm baselines: :mod:`.knowledge`), and the fairness reference (a job alone on its fair
share).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .applications import Application
from .jobs import Config, ReplayJob, adaptive_config, bucket, fixed_config, true_rate
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


def run_time(app: Application, gpus_per_node: int, gpus: int, config: Config | None, epochs: int | None = None) -> float:
    """Seconds for the whole training (its first ``epochs``) at a fixed size."""
    return sum(_epoch_seconds(app, gpus_per_node, gpus, config)[:epochs])


def fixed_duration_work(app: Application, spec: JobSpec, gpus_per_node: int) -> float:
    """Work (samples at M0) that takes ``spec.duration_s`` on the job's GPUs at its batch size."""
    assert spec.duration_s is not None
    config = fixed_config(app, spec.num_replicas, spec.batch_size)
    return app.total_work * spec.duration_s / run_time(app, gpus_per_node, spec.num_replicas, config)


def time_alone(job: ReplayJob, share: float, max_gpus: Callable[[ReplayJob], int]) -> float:
    """Seconds the job needs alone on ``share`` GPUs at its best configuration, up to the epoch
    it stops after: on ``floor(share)`` GPUs (at most the job's maximum) if the share is at least
    one GPU, otherwise on one GPU slowed by the share (time-slicing)."""
    gpus = max(1, min(int(share), max_gpus(job)))
    epochs = job.last_epoch + 1
    seconds = run_time(job.app, job.gpus_per_node, gpus, None, epochs) * job.total_work / job.app.total_work
    return seconds / share if share < 1.0 else seconds
