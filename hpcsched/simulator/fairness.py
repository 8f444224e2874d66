"""Site mode in the simulator: a mixed run (rigid and elastic jobs of several users) beside its
all-rigid baseline, and finish-time fairness per user.

Per-user finish-time fairness: ``rho_u = mean JCT of u's jobs in the run / mean JCT of the same
jobs when u is alone on an equal slice of the cluster``, the slice being ``num_nodes // U`` nodes
(``U`` the users with jobs), run under the same policy with the same rigid jobs (a rigid job
larger than the slice runs on the whole slice). ``rho_u <= 1``: the user did at least as well as
on their own slice. The worst ``rho_u`` is reported, as :mod:`.metrics` reports the worst per job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hpcsched.allocator import Cluster

from .applications import Application
from .engine import simulate
from .metrics import JobOutcome, SimulationResult
from .owners import all_rigid, of_user
from .restarts import RestartModel
from .workload import JobSpec

SITE_POLICY = "site"
ORACLE_POLICY = "site-oracle"
Measure = Callable[[JobOutcome], float]


@dataclass(frozen=True)
class SiteComparison:
    """One workload and seed: the mixed run, the all-rigid baseline, and each one's per-user FTF."""

    mixed: SimulationResult
    baseline: SimulationResult
    mixed_user_ftf: Mapping[str, float]
    baseline_user_ftf: Mapping[str, float]

    def metrics(self) -> dict[str, float]:
        rigid = [job.name for job in self.mixed.jobs if job.rigid]
        elastic = [job.name for job in self.mixed.jobs if not job.rigid]
        return {
            "rigid_jct_ratio": _ratio(self.mixed, self.baseline, rigid, _jct),
            "rigid_wait_ratio": _ratio(self.mixed, self.baseline, rigid, _wait),
            "rigid_wait_mixed_s": _mean(self.mixed, rigid, _wait),
            "rigid_wait_baseline_s": _mean(self.baseline, rigid, _wait),
            "elastic_jct_ratio": _ratio(self.mixed, self.baseline, elastic, _jct),
            "worst_user_ftf": max(self.mixed_user_ftf.values()),
            "worst_user_ftf_baseline": max(self.baseline_user_ftf.values()),
            "utilisation": self.mixed.utilisation,
            "utilisation_baseline": self.baseline.utilisation,
            "avg_jct": float(np.mean(self.mixed.jcts)),
            "avg_jct_baseline": float(np.mean(self.baseline.jcts)),
        }


def _jct(job: JobOutcome) -> float:
    return job.jct


def _wait(job: JobOutcome) -> float:
    return job.first_start - job.submit_time


def _mean(result: SimulationResult, names: Sequence[str], of: Measure) -> float:
    chosen = set(names)
    values = [of(job) for job in result.jobs if job.name in chosen]
    return float(np.mean(values)) if values else 0.0


def jct_ratio(result: SimulationResult, baseline: SimulationResult, names: Sequence[str]) -> float:
    """Mean JCT of the jobs ``names`` in ``result`` over their mean JCT in ``baseline``."""
    return _ratio(result, baseline, names, _jct)


def _ratio(result: SimulationResult, baseline: SimulationResult, names: Sequence[str], of: Measure) -> float:
    below = _mean(baseline, names, of)
    return _mean(result, names, of) / below if below else 1.0


def user_ftf(
    workload: Sequence[JobSpec],
    result: SimulationResult,
    cluster: Cluster,
    restart: RestartModel,
    seed: int,
    applications: Mapping[str, Application],
    policy: str = SITE_POLICY,
) -> dict[str, float]:
    """``rho_u`` for each user of ``workload`` (module docstring), from ``result`` and one run per
    user alone on their slice under ``policy``."""
    users = sorted({spec.user for spec in workload})
    piece = Cluster(max(1, cluster.num_nodes // len(users)), cluster.gpus_per_node)
    shared = {job.name: job.jct for job in result.jobs}
    rho = {}
    for user in users:
        mine = of_user(workload, user)
        alone = simulate(mine, policy, piece, restart, seed=seed, applications=applications)
        rho[user] = float(np.mean([shared[spec.name] for spec in mine]) / np.mean(alone.jcts))
    return rho


def compare_site(
    workload: Sequence[JobSpec],
    cluster: Cluster,
    restart: RestartModel,
    seed: int,
    applications: Mapping[str, Application],
    upper_bound: bool = False,
) -> SiteComparison:
    """Run ``workload`` (users and rigid jobs assigned, :func:`.owners.assign_owners`) under the
    site policy, and again with every job rigid (same seed), with per-user FTF for both.
    ``upper_bound``: the mixed run (and each user's run alone) under ``site-oracle`` with free
    restarts, the same rules told the truth and resizing for nothing, against the same baseline:
    what better information and cheaper resizes could give at most."""
    policy, mixed_restart = (ORACLE_POLICY, RestartModel(kind="fixed", seconds=0.0)) if upper_bound else (SITE_POLICY, restart)
    baseline_workload = all_rigid(workload)
    mixed = simulate(workload, policy, cluster, mixed_restart, seed=seed, applications=applications)
    baseline = simulate(baseline_workload, SITE_POLICY, cluster, restart, seed=seed, applications=applications)
    return SiteComparison(
        mixed=mixed,
        baseline=baseline,
        mixed_user_ftf=user_ftf(workload, mixed, cluster, mixed_restart, seed, applications, policy),
        baseline_user_ftf=user_ftf(baseline_workload, baseline, cluster, restart, seed, applications),
    )
