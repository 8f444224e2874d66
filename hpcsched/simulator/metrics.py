"""What a simulation run yields, and the numbers the policies are compared on.

* JCT: completion minus submission time; average and 99th percentile (linear interpolation).
* makespan: from time 0 (the workload's origin) to the last completion.
* GPU utilisation: allocated GPU-seconds (restart pauses included) over ``GPUs x makespan``.
* restarts: re-allocations of a job that had run before (resizes, and resumes after preemption);
  the first start is not one. Restart time fraction: GPU-seconds held while paused for such a
  restart over all allocated GPU-seconds.
* finish-time fairness (Themis, Mahajan et al., NSDI 2020): ``rho = JCT / T_alone``, with
  ``T_alone`` the job's run time alone on an equal share of the cluster, ``GPUs / N``, ``N`` the
  average number of jobs present (submitted, not finished, itself included) over its lifetime,
  at its best batch configuration and at most the largest size the policy would give it
  (:func:`.work.time_alone`), plus the pause of the job's first start as it happened (queue
  wait and container start), which no scheduler can avoid. ``rho <= 1`` means the job did at least as well as on its own slice;
  the worst ``rho`` over all jobs is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hpcsched.allocator import Cluster

from .jobs import ReplayJob
from .work import time_alone


@dataclass(frozen=True)
class JobOutcome:
    """One finished job. ``first_start``: the decision that first gave it GPUs; ``alone_s``: the
    finish-time fairness reference ``T_alone`` (its first pause included), so ``ftf = jct / alone_s``."""

    name: str
    application: str
    submit_time: float
    completion_time: float
    restarts: int
    allocated_gpu_s: float
    restart_gpu_s: float
    ftf: float
    first_start: float
    alone_s: float
    user: str = ""
    rigid: bool = False

    @property
    def jct(self) -> float:
        return self.completion_time - self.submit_time


@dataclass(frozen=True)
class SimulationResult:
    """One policy's run: per-job outcomes and cluster usage sampled at every decision."""

    policy: str
    restart_cost: str
    total_gpus: int
    jobs: tuple[JobOutcome, ...]
    usage: tuple[tuple[float, int], ...]

    @property
    def jcts(self) -> np.ndarray:
        return np.array([job.jct for job in self.jobs])

    @property
    def makespan(self) -> float:
        return max(job.completion_time for job in self.jobs)

    @property
    def utilisation(self) -> float:
        return sum(job.allocated_gpu_s for job in self.jobs) / (self.total_gpus * self.makespan)

    @property
    def restarts(self) -> int:
        return sum(job.restarts for job in self.jobs)

    def metrics(self) -> dict[str, float | int | str]:
        allocated = sum(job.allocated_gpu_s for job in self.jobs)
        return {
            "policy": self.policy,
            "restart_cost": self.restart_cost,
            "jobs": len(self.jobs),
            "avg_jct": float(np.mean(self.jcts)),
            "p99_jct": float(np.percentile(self.jcts, 99)),
            "makespan": self.makespan,
            "utilisation": self.utilisation,
            "restarts": self.restarts,
            "restarts_per_job": self.restarts / len(self.jobs),
            "restart_time_fraction": sum(job.restart_gpu_s for job in self.jobs) / allocated if allocated else 0.0,
            "worst_ftf": max(job.ftf for job in self.jobs),
        }


def summarise(
    policy: str,
    restart_cost: str,
    jobs: Sequence[ReplayJob],
    usage: Sequence[tuple[float, int]],
    cluster: Cluster,
    max_gpus: Callable[[ReplayJob], int],
) -> SimulationResult:
    total = max(cluster.capacity, 1)

    def outcome(job: ReplayJob) -> JobOutcome:
        assert job.completion is not None
        present = job.contention / job.present_s if job.present_s else 1.0
        share = total / max(present, 1.0)
        jct = job.completion - job.spec.submit_time
        alone = job.first_pause + time_alone(job, share, max_gpus)
        return JobOutcome(
            name=job.name,
            application=job.app.name,
            submit_time=job.spec.submit_time,
            completion_time=job.completion,
            restarts=job.restarts,
            allocated_gpu_s=job.allocated_gpu_s,
            restart_gpu_s=job.restart_gpu_s,
            ftf=jct / alone,
            first_start=job.history[0][0] if job.history else job.spec.submit_time,
            alone_s=alone,
            user=job.spec.user,
            rigid=job.spec.rigid,
        )

    return SimulationResult(policy, restart_cost, total, tuple(outcome(j) for j in jobs), tuple(usage))
