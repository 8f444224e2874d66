"""Pollux's own policy (Qiao et al., OSDI 2021) as its artifact's simulator runs it, written here
from its description (petuum/adaptdl, branch ``osdi21-artifact``, ``simulator/``) to be checked
against the study's published results (``benchmarks/pollux_fidelity.py``). No hpcsched rule is in
it: no starvation rule, no shortest-remaining-first, no remaining work at all.

Every 60 s round (never between rounds) it maximises the power mean, ``p = -1``, of the jobs'
scaled speedups:

* a job's speedup on ``g`` GPUs is its best goodput there over its goodput on its fair share
  (``ceil(capacity / jobs)`` GPUs, priced on one node as Pollux does), from what the job has
  reported (:mod:`..knowledge`: its fitted step-time model and latest gradient noise); before it
  has reported anything it is ``g / fair share`` (linear), and it runs its initial batch. The
  model is fitted with hpcsched's fit and Pollux's assumptions for what the job has not shown
  (:data:`hpcsched.models.POLLUX_PRIOR`: no all-reduce cost before it has run on several GPUs,
  as Pollux's ``fit_perf_params`` pins those constants at their lower bounds);
* the speedup is scaled by ``1 / gpus_per_node`` (a job's dominant share of the cluster times the
  number of nodes) and, for every size other than the current one, multiplied by the restart
  penalty ``max(age - restarts * 30, 0) / (age + 30)``: a fixed 30 s, whatever a restart really
  costs, and charged on the first start too (a job just submitted is worth little at once);
* a job may use at most twice the most GPUs it has run on (one before it has run; the growth
  cap), 64, and its application's limit; ncf runs one GPU at a fixed batch of 32,768.

Pollux searches with a genetic algorithm (NSGA-II, 100 states for 100 generations, seeded with
the previous round's states) in which the jobs are ranked by least attained service (GPU-seconds),
then submission: earlier-ranked jobs keep their GPUs when a node is over-subscribed. Here the
search is deterministic: the better (by that same objective) of two greedy plans, each placing
one GPU per job in that rank order and then growing on the best objective gain per GPU
(:mod:`hpcsched.allocator.search`): one from scratch, one keeping every running job at its size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from hpcsched.allocator import Cluster, ElasticJob, GoodputModel, Limits
from hpcsched.allocator.candidates import FloatArray, JobTable, job_table
from hpcsched.allocator.objective import phi
from hpcsched.allocator.search import Plan, Problem, admit, empty_plan, grow
from hpcsched.models import POLLUX_PRIOR
from hpcsched.models.goodput import max_goodput

from ..jobs import Config, JobView, fixed_config
from ..knowledge import adaptive_choice
from ..restarts import RestartModel

ASSUMED_RESTART_S = 30.0  # the pause Pollux's restart penalty assumes
FAIRNESS_P = -1.0  # Pollux's power-mean exponent
MOST_REPLICAS = 64  # Pollux's simulator never gives a job more
FIXED_BATCH = {"ncf": 32768}  # Pollux's simulator runs ncf at this batch, on one GPU


class PolluxPolicy:
    """``growth_cap=False`` lets a job take any size at once (an ablation, not Pollux);
    ``oracle=True`` hands it the true models (``pollux-faithful-oracle``, an upper bound)."""

    decides_on_arrival = False

    def __init__(self, growth_cap: bool = True, oracle: bool = False) -> None:
        self.name = "pollux-faithful" + ("-oracle" if oracle else "") + ("" if growth_cap else "-uncapped")
        self.growth_cap = growth_cap
        self.oracle = oracle
        self.prior = POLLUX_PRIOR  # its fit's assumptions before a job has run on several GPUs
        self._attained: dict[str, float] = {}
        self._last_round: float | None = None

    def config(self, job: JobView, gpus: int) -> Config:
        """ncf's fixed batch; the initial batch until the job has reported; then its own choice."""
        if job.app.name in FIXED_BATCH:
            return fixed_config(job.app, gpus, FIXED_BATCH[job.app.name])
        return adaptive_choice(job, gpus) if job.measured else fixed_config(job.app, gpus, job.app.base_bsz)

    def max_gpus(self, job: JobView) -> int:
        return max(1, min(job.app.max_gpus, MOST_REPLICAS))

    def limit(self, job: JobView) -> int:
        """The most GPUs the job may get this round (module docstring: the growth cap)."""
        return min(self.max_gpus(job), max(2 * job.largest, 1)) if self.growth_cap else self.max_gpus(job)

    def admit(
        self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel
    ) -> tuple[Mapping[str, int], Mapping[str, int]]:
        return self.decide(now, jobs, cluster, restart), {}  # Pollux decides in rounds only

    def decide(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        self._attend(now, jobs)
        if not jobs:
            return {}
        problem = self._problem(now, jobs, cluster)
        order = sorted(range(len(jobs)), key=lambda j: (self._attained[jobs[j].name], jobs[j].spec.submit_time, jobs[j].name))
        plan = _best_plan(problem, order)
        return {job.name: plan.size(j, problem.tables) for j, job in enumerate(jobs) if plan.index[j] >= 0}

    def _attend(self, now: float, jobs: Sequence[JobView]) -> None:
        """Add the GPU-seconds each job held since the last round (its attained service)."""
        since = now - self._last_round if self._last_round is not None else 0.0
        for job in jobs:
            self._attained[job.name] = self._attained.get(job.name, 0.0) + since * job.gpus
        self._last_round = now

    def _problem(self, now: float, jobs: Sequence[JobView], cluster: Cluster) -> Problem:
        fair = max(1, math.ceil(cluster.capacity / len(jobs)))
        requests = [self._request(job, now) for job in jobs]
        tables = [job_table(request, cluster, Limits()) for request in requests]
        values = [
            phi(speedups(job, table, fair) / cluster.gpus_per_node * restart_penalty(job, table, now), FAIRNESS_P)
            for job, table in zip(jobs, tables, strict=True)
        ]
        idle = float(phi(0.0, FAIRNESS_P))
        return Problem(requests, tables, values, [idle] * len(jobs), [False] * len(jobs), cluster, Limits(), math.inf)

    def _request(self, job: JobView, now: float) -> ElasticJob:
        return ElasticJob(
            key=job.name,
            model=GoodputModel(job.params, job.noise, job.app.limits),
            min_gpus=1,
            max_gpus=self.limit(job),
            current_gpus=job.gpus,
            age_s=now - job.spec.submit_time,
            restarts=job.restarts,
        )


def speedups(job: JobView, table: JobTable, fair_gpus: int) -> FloatArray:
    """Each candidate's goodput over the goodput on ``fair_gpus`` GPUs of one node; linear in the
    GPUs for a job that has reported nothing (module docstring)."""
    if not job.measured:
        return np.asarray(table.sizes / fair_gpus, np.float64)
    base = float(max_goodput(job.params, job.noise, 1, fair_gpus, job.app.limits))
    if base <= 0.0:  # no batch fits the fair share: measure against the smallest candidate
        base = float(table.goodput[0])
    return np.asarray(table.goodput / base, np.float64)


def restart_penalty(job: JobView, table: JobTable, now: float) -> FloatArray:
    """``max(age - restarts * 30, 0) / (age + 30)`` for every size but the current one (1)."""
    age = now - job.spec.submit_time
    kept = max(age - job.restarts * ASSUMED_RESTART_S, 0.0) / (age + ASSUMED_RESTART_S)
    return np.where(table.sizes == job.gpus, 1.0, kept)


def _best_plan(problem: Problem, order: Sequence[int]) -> Plan:
    """The better of the plan from scratch and the plan that keeps the running jobs' sizes."""
    running = [job.current_gpus > 0 for job in problem.jobs]
    plans = [_plan(problem, order, [False] * len(running))]
    if any(running):
        plans.append(_plan(problem, sorted(order, key=lambda j: not running[j]), running))
    return max(plans, key=problem.objective)


def _plan(problem: Problem, order: Sequence[int], pinned: Sequence[bool]) -> Plan:
    plan = empty_plan(problem)
    admit(problem, plan, order, pinned)
    grow(problem, plan, pinned)
    return plan
