"""What a simulated scheduling policy is: each round, sizes for the jobs that have arrived.

A policy sees each job only as a :class:`~hpcsched.simulator.jobs.JobView`, what a real scheduler
knows of it (:mod:`hpcsched.simulator.knowledge`); one that sets ``oracle = True`` gets the truth
in the same form and is a labelled upper bound (name ending in ``-oracle``), never a baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from hpcsched.allocator import Cluster

from ..jobs import Config, JobView
from ..restarts import RestartModel


class Policy(Protocol):
    """A policy may keep state between rounds (queues, node placements); make one per run."""

    name: str
    #: Whether its real counterpart also acts between rounds (Slurm schedules on submission).
    #: Informational: :func:`hpcsched.simulator.simulate` gives every policy the same timing.
    decides_on_arrival: bool
    # Optional ``oracle: bool`` (read with getattr, default False): whether it is handed the truth.
    # Optional ``grows_before_break: bool`` (default False): whether its jobs grow make-before-break
    # (keep training at the old size while the larger allocation waits in the queue).

    def decide(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        """GPUs per job name for the next interval (missing: 0)."""
        ...

    def admit(
        self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel
    ) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """Between rounds (``simulate(on_arrival=True)``): the sizes :meth:`decide`
        gives, and the shrinks (new sizes) to apply first to make room for waiting jobs."""
        ...

    def config(self, job: JobView, gpus: int) -> Config:
        """The batch configuration the job runs with on ``gpus`` GPUs."""
        ...

    def max_gpus(self, job: JobView) -> int:
        """The most GPUs the policy would give the job (fairness reference)."""
        ...
