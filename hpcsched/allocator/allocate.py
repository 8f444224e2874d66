"""The allocator's entry point: cluster facts and job models in, sizes and reasons out.

Two plans are built each round and the better one (by the restart-priced objective) is taken:

* the *free* plan: every job's minimum in admission order (running jobs included, at their
  minimum), then greedy growth; running jobs end where the objective puts them;
* the *status quo*: every running job pinned at its current size, waiting jobs admitted into
  what is left, then greedy growth of the unpinned jobs. It is void when a pinned job no longer
  fits (nodes lost, limits lowered) or a starving job would not be admitted.

Because a changed size is priced for its restart inside the objective, the free plan only wins
when the gain, summed over the cluster, exceeds what the restarts cost. A last pass then tries to
put each job that the free plan resized back at its current size where that alone scores higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .admission import admission_order, starving
from .candidates import JobTable, job_table
from .cluster import Cluster, Limits
from .decisions import Allocation, Decision
from .explain import explain
from .jobs import ElasticJob
from .objective import fair_goodput, job_values, next_departure, time_saved, waiting_value
from .policy import HPCSCHED, AllocatorPolicy
from .search import Plan, Problem, admit, empty_plan, grow

# Remaining-time weights are clipped to [1/4, 4]: a long job must not become so light that the
# allocator treats it as free buffer capacity (resizing it at every arrival and departure).
WEIGHT_RANGE = 4.0


def _problem(cluster: Cluster, jobs: Sequence[ElasticJob], policy: AllocatorPolicy, limits: Limits) -> Problem:
    tables = [job_table(job, cluster, limits) for job in jobs]
    runnable = sum(1 for t in tables if len(t.sizes))
    fair = max(1, cluster.capacity // max(1, runnable))
    weights = _weights(jobs, tables, fair, policy)
    values = [
        weight * job_values(job, table, policy, fair) if len(table.sizes) else table.goodput
        for job, table, weight in zip(jobs, tables, weights, strict=True)
    ]
    departure = next_departure(jobs, tables)
    idle = [
        weight * waiting_value(job, table, policy, fair, departure)
        for job, table, weight in zip(jobs, tables, weights, strict=True)
    ]
    hungry = [starving(job, policy) for job in jobs]
    return Problem(jobs, tables, values, idle, hungry, cluster, limits, departure)


def _weights(jobs: Sequence[ElasticJob], tables: Sequence[JobTable], fair: int, policy: AllocatorPolicy) -> list[float]:
    """``(median T / T_j) ** srpt_weight``, ``T_j`` the remaining time at the fair share."""
    if policy.srpt_weight == 0.0:
        return [1.0] * len(jobs)
    pairs = zip(jobs, tables, strict=True)
    times = [job.remaining_work / fair_goodput(t, fair) if len(t.sizes) else math.inf for job, t in pairs]
    finite = [t for t in times if math.isfinite(t) and t > 0]
    if not finite:
        return [1.0] * len(jobs)
    middle = float(np.median(finite))
    raw = [(middle / max(t, 1.0)) ** policy.srpt_weight if math.isfinite(t) else 1.0 for t in times]
    return [min(max(w, 1.0 / WEIGHT_RANGE), WEIGHT_RANGE) for w in raw]


def _free_plan(problem: Problem, order: Sequence[int]) -> Plan:
    plan = empty_plan(problem)
    nobody = [False] * len(problem.jobs)
    admit(problem, plan, order, nobody)
    grow(problem, plan, nobody)
    return plan


def _status_quo(problem: Problem, order: Sequence[int], policy: AllocatorPolicy) -> Plan | None:
    pinned = [problem.current_index(j) >= 0 for j in range(len(problem.jobs))]
    plan = empty_plan(problem)
    first = sorted(order, key=lambda j: not pinned[j])
    if not admit(problem, plan, first, pinned):
        return None
    if any(hungry and plan.index[j] < 0 and len(problem.tables[j].sizes) for j, hungry in enumerate(problem.starving)):
        return None
    grow(problem, plan, pinned)
    return plan


def _revert_where_better(problem: Problem, plan: Plan) -> None:
    """Local search: undo single resizes that the objective prefers undone, then regrow."""
    for job in range(len(problem.jobs)):
        current, chosen = problem.current_index(job), plan.index[job]
        if current < 0 or chosen == current:
            continue
        before = problem.values[job][chosen] if chosen >= 0 else problem.idle[job]
        if problem.values[job][current] > before:
            problem.move(plan, job, current)
    grow(problem, plan, [False] * len(problem.jobs))


def allocate(
    cluster: Cluster,
    jobs: Sequence[ElasticJob],
    policy: AllocatorPolicy = HPCSCHED,
    limits: Limits | None = None,
) -> Allocation:
    """Target sizes for all ``jobs`` (module docstring); decisions come back in the input order.

    Never exceeds the cluster (the returned placements are a packing of the free GPUs), never
    goes outside a job's ``min_gpus..max_gpus`` or the node limits, never grows a running job
    unless its predicted time saved exceeds its restart cost times ``1 + hysteresis``.
    """
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique")
    problem = _problem(cluster, jobs, policy, limits or Limits())
    order = admission_order(jobs, problem.tables, policy)
    plan = _free_plan(problem, order)
    _revert_where_better(problem, plan)
    quo = _status_quo(problem, order, policy)
    quo_value = problem.objective(quo) if quo is not None else None
    if quo is not None and quo_value is not None and quo_value >= problem.objective(plan):
        plan = quo
    decisions = tuple(_decision(problem, plan, j, policy) for j in range(len(jobs)))
    return Allocation(
        decisions=decisions,
        objective=problem.objective(plan),
        status_quo_objective=quo_value,
        next_free_s=problem.next_free_s,
    )


def _decision(problem: Problem, plan: Plan, job: int, policy: AllocatorPolicy) -> Decision:
    spec, table = problem.jobs[job], problem.tables[job]
    target = plan.size(job, problem.tables)
    gain = time_saved(table, spec, spec.current_gpus, target)
    cost = spec.restart.seconds(spec.current_gpus, target)
    at = table.index_of(target)
    remaining = float(table.remaining_time(spec.remaining_work)[at]) if target and at >= 0 else math.inf
    return Decision(
        key=spec.key,
        current_gpus=spec.current_gpus,
        target_gpus=target,
        placement=plan.ledger.holdings.get(job, ()),
        gain_s=gain,
        cost_s=cost,
        reason=explain(spec, table, target, gain, cost, policy),
        remaining_s=remaining,
    )
