"""Plain Slurm: every job runs on the GPUs it asked for, first come first served, with EASY
backfill (a later job may start early if it does not delay the first job in the queue).

Backfill plans with the jobs' time limits, taken exact here (:meth:`JobView.time_limit`; real
users' limits are usually generous), so this baseline is, if anything, better than the real
thing. Jobs are never preempted or resized; each start pays the restart model's start cost.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from hpcsched.allocator import Cluster
from hpcsched.allocator.placement import NodeLedger

from ..jobs import Config, JobView, fixed_config
from ..restarts import RestartModel


def predicted_end(job: JobView, size: int, config: Config, now: float, restart: RestartModel) -> float:
    """When ``job`` ends by its time limit at ``size``: a job not started yet pays its start
    first; a running one has used ``executed_s`` of its limit (its start included)."""
    start = restart.expected(0.0).seconds(0, size)
    used = job.executed_s if job.gpus else 0.0
    return now + max(start + job.time_limit(size, config) - used, 0.0)


class StaticPolicy:
    """``realistic``: use the workload's user-style configurations instead of the tuned ones."""

    def __init__(self, realistic: bool = False) -> None:
        self.realistic = realistic
        self.name = "static-realistic" if realistic else "static"
        self.decides_on_arrival = True
        self._ledger: NodeLedger | None = None
        self._ids: dict[str, int] = {}
        self._running: dict[str, int] = {}

    def request(self, job: JobView) -> tuple[int, int]:
        """(GPUs, global batch) the job was submitted with."""
        if self.realistic:
            return job.spec.realistic or (1, job.app.base_bsz)
        return job.spec.num_replicas, job.spec.batch_size

    def _size(self, job: JobView, cluster: Cluster) -> int:
        return max(1, min(self.request(job)[0], cluster.capacity))

    def admit(
        self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel
    ) -> tuple[Mapping[str, int], Mapping[str, int]]:
        return self.decide(now, jobs, cluster, restart), {}  # never shrinks a job

    def config(self, job: JobView, gpus: int) -> Config:
        return fixed_config(job.app, gpus, self.request(job)[1])

    def max_gpus(self, job: JobView) -> int:
        return self.request(job)[0]

    def _ends(self, job: JobView, size: int, now: float, restart: RestartModel) -> float:
        return predicted_end(job, size, job.config or self.config(job, size), now, restart)

    def _shadow(self, head: int, size: int, ends: dict[str, float], ledger: NodeLedger) -> tuple[float, NodeLedger]:
        """When the head job can start at the latest, and the nodes as they will be then."""
        future = copy.deepcopy(ledger)
        for name, end in sorted(ends.items(), key=lambda item: item[1]):
            future.release(self._ids[name])
            if future.place(head, size):
                return end, future
        return float("inf"), future

    def decide(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        if self._ledger is None:
            self._ledger = NodeLedger(cluster.free_gpus(), cluster.gpus_per_node)
        ledger, by_name = self._ledger, {job.name: job for job in jobs}
        for name in [n for n in self._running if n not in by_name]:
            ledger.release(self._ids[name])
            del self._running[name]
        for job in jobs:
            self._ids.setdefault(job.name, len(self._ids))
        ends = {name: self._ends(by_name[name], size, now, restart) for name, size in self._running.items()}
        queue = sorted((j for j in jobs if j.name not in self._running), key=lambda j: (j.spec.submit_time, j.name))
        shadow: tuple[float, NodeLedger] | None = None
        for job in queue:
            size, key = self._size(job, cluster), self._ids[job.name]
            end = self._ends(job, size, now, restart)
            if shadow is None:
                if ledger.place(key, size):
                    self._running[job.name], ends[job.name] = size, end
                else:
                    shadow = self._shadow(key, size, ends, ledger)
                continue
            fits_later = end <= shadow[0] or shadow[1].place(key, size)
            if fits_later and ledger.place(key, size):
                self._running[job.name], ends[job.name] = size, end
            elif end > shadow[0] and key in shadow[1].holdings:
                shadow[1].release(key)
        return dict(self._running)
