"""A trace-driven cluster simulator on simulated time, after Pollux's (OSDI 2021) artifact.

It replays the Pollux workloads (or a window of the Philly trace) on ``nodes x gpus_per_node``
GPUs under one of several policies: plain Slurm (static sizes, FIFO with backfill), Tiresias,
a Pollux-like elastic policy, and hpcsched's own allocator with restart-cost pricing. The elastic
policies run :func:`hpcsched.allocator.allocate` and :func:`hpcsched.models.best_config`
unchanged. Results are deterministic for a seed. See ``docs/simulator.md``.
"""

from .applications import Application, load_application, load_applications
from .engine import simulate
from .metrics import JobOutcome, SimulationResult
from .policies import POLICY_NAMES, make_policy
from .restarts import RestartModel
from .workload import JobSpec, WorkloadError, parse_workload, philly_workload, read_philly, read_workload

__all__ = [
    "POLICY_NAMES",
    "Application",
    "JobOutcome",
    "JobSpec",
    "RestartModel",
    "SimulationResult",
    "WorkloadError",
    "load_application",
    "load_applications",
    "make_policy",
    "parse_workload",
    "philly_workload",
    "read_philly",
    "read_workload",
    "simulate",
]
