"""Tiresias (Gu et al., NSDI 2019) as Pollux's simulator runs it: two-level discretised least
attained service, preemptive, with the tuned sizes.

A job starts in the high-priority queue and is demoted once it has received 16 GPU-hours
(``executed seconds x GPUs``); each queue is first come first served. Every round the jobs are
taken in queue order and run if their GPUs can be placed, so a job in the low queue is preempted
(checkpointed, and later resumed with a restart) when high-priority jobs need its GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hpcsched.allocator import Cluster
from hpcsched.allocator.placement import NodeLedger

from ..jobs import Config, JobView, fixed_config
from ..restarts import RestartModel

DEMOTE_GPU_S = 16 * 3600.0


class TiresiasPolicy:
    name = "tiresias"
    decides_on_arrival = False

    def __init__(self) -> None:
        self._demoted: dict[str, float] = {}

    def admit(
        self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel
    ) -> tuple[Mapping[str, int], Mapping[str, int]]:
        return self.decide(now, jobs, cluster, restart), {}  # never shrinks a job

    def config(self, job: JobView, gpus: int) -> Config:
        return fixed_config(job.app, gpus, job.spec.batch_size)

    def max_gpus(self, job: JobView) -> int:
        return job.spec.num_replicas

    def _queue(self, job: JobView, now: float) -> tuple[int, float, str]:
        attained = job.executed_s * job.spec.num_replicas
        if job.name not in self._demoted and attained >= DEMOTE_GPU_S:
            self._demoted[job.name] = now
        if job.name in self._demoted:
            return (1, self._demoted[job.name], job.name)
        return (0, job.spec.submit_time, job.name)

    def decide(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        ledger = NodeLedger(cluster.free_gpus(), cluster.gpus_per_node)
        sizes: dict[str, int] = {}
        for index, job in enumerate(sorted(jobs, key=lambda j: self._queue(j, now))):
            size = max(1, min(job.spec.num_replicas, cluster.capacity))
            if ledger.place(index, size):
                sizes[job.name] = size
        return sizes
