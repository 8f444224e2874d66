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

The objective (as Pollux's) values a waiting job's minimum above almost anything, so a plan that
starts a newcomer by shrinking running jobs is then checked against completion times
(``AllocatorPolicy.admission_pays``, :func:`.admission.admission_pays`): if the newcomer's spared
wait is less than what the shrinks cost, it is left waiting (for a job to end) and the others
are decided again without it. Short newcomers (``short_s``) and starving ones are exempt, and
so, in a cluster with more jobs than GPUs, are newcomers that have never run (``never_ran_first``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .admission import admission_order, admitted_regardless, crowded, starving, unpaid_admissions
from .candidates import JobTable, job_table
from .cluster import Cluster, Limits
from .decisions import Allocation, Decision
from .explain import explain
from .jobs import ElasticJob
from .objective import fair_goodput, job_values, next_departure, time_saved, waiting_value
from .policy import HPCSCHED, AllocatorPolicy
from .search import Plan, Problem, admit, empty_plan, grow


def calm(cluster: Cluster, jobs: Sequence[ElasticJob], policy: AllocatorPolicy) -> bool:
    """Every job runs and at least ``calm_share`` of the capacity is idle: a grow takes GPUs
    nobody is waiting for, so a climbing job's grow pays ``calm_hysteresis`` (:mod:`.policy`)."""
    idle = cluster.capacity - sum(job.current_gpus for job in jobs)
    return idle > 0 and idle >= policy.calm_share * cluster.capacity and all(job.current_gpus for job in jobs)


def _problem(cluster: Cluster, jobs: Sequence[ElasticJob], policy: AllocatorPolicy, limits: Limits, quiet: bool) -> Problem:
    tables = [job_table(job, cluster, limits) for job in jobs]
    fair = fair_shares(jobs, tables, cluster.capacity)
    weights = _weights(jobs, tables, fair, cluster.capacity, policy)
    values = [
        weight * job_values(job, table, policy, share, quiet) if len(table.sizes) else table.goodput
        for job, table, weight, share in zip(jobs, tables, weights, fair, strict=True)
    ]
    departure = next_departure(jobs, tables)
    idle = [
        weight * waiting_value(job, table, policy, share, departure)
        for job, table, weight, share in zip(jobs, tables, weights, fair, strict=True)
    ]
    hungry = [starving(job, policy) for job in jobs]
    return Problem(jobs, tables, values, idle, hungry, cluster, limits, departure, quiet)


def _runnable_users(jobs: Sequence[ElasticJob], tables: Sequence[JobTable]) -> Counter[str]:
    """Runnable jobs per user (every job's ``user`` "" when one user's daemon sizes its own)."""
    return Counter(job.user for job, table in zip(jobs, tables, strict=True) if len(table.sizes))


def fair_shares(jobs: Sequence[ElasticJob], tables: Sequence[JobTable], capacity: int) -> list[int]:
    """Each job's fair share in GPUs: the capacity split between the users with runnable jobs in
    proportion to their weights (Slurm's fair-share entitlements in site mode; all equal
    otherwise), and a user's part equally between that user's jobs. With one user (or none named)
    this is the capacity over the runnable jobs, as before users were known.

    Each speedup is measured against this share (:mod:`.objective`), so a user's extra jobs each
    start from a smaller share and gain little from more GPUs: a user with four jobs ends with
    about the GPUs of a user with one (8 and 8 of 16, `tests/unit/test_allocator_users.py`).
    Weighting each job's term by 1/(its user's jobs) as well overshoots (5 and 11)."""
    per_user = _runnable_users(jobs, tables)
    if not per_user:
        return [max(1, capacity)] * len(jobs)
    weight: dict[str, float] = {}
    for job in jobs:
        if job.user in per_user:
            weight[job.user] = max(weight.get(job.user, 0.0), job.weight)
    total = sum(weight.values())
    return [max(1, int(capacity * weight.get(job.user, 1.0) / total // max(1, per_user.get(job.user, 1)))) for job in jobs]


def _weights(
    jobs: Sequence[ElasticJob], tables: Sequence[JobTable], fair: Sequence[int], capacity: int, policy: AllocatorPolicy
) -> list[float]:
    """Each job's weight: ``(median T / T_j) ** srpt_weight`` clipped to ``[1/srpt_range,
    srpt_range]``, ``T_j`` the job's remaining time on an equal split of the cluster between the
    runnable jobs, times its user's entitlement, ``goodput(fair share) / goodput(equal split)``.

    The two parts are kept apart so that ``srpt_weight`` ranks jobs by their length only. Measured
    at the fair share instead, a job of a user with a larger share looks shorter *because* of that
    share, and the exponent favoured it again (with ``srpt_weight`` 2, two users with 3:1 Slurm
    shares got 7:1 of the nodes instead of 6:2). With one user the entitlement is 1."""
    if policy.srpt_weight == 0.0:
        return [1.0] * len(jobs)
    split = max(1, capacity // max(1, sum(1 for t in tables if len(t.sizes))))
    rows = zip(jobs, tables, strict=True)
    times = [job.remaining_work / fair_goodput(t, split) if len(t.sizes) else math.inf for job, t in rows]
    finite = [t for t in times if math.isfinite(t) and t > 0]
    if not finite:
        return [1.0] * len(jobs)
    middle = float(np.median(finite))
    bound = policy.srpt_range
    weights = []
    for t, table, share in zip(times, tables, fair, strict=True):
        if not math.isfinite(t):
            weights.append(1.0)
            continue
        srpt = min(max((middle / max(t, 1.0)) ** policy.srpt_weight, 1.0 / bound), bound)
        weights.append(srpt * fair_goodput(table, share) / fair_goodput(table, split))
    return weights


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
    unless its predicted time saved exceeds its restart cost times ``1 + hysteresis`` (``1 +
    calm_hysteresis`` for a climbing job when the cluster is :func:`calm`).
    """
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique")
    limits = limits or Limits()
    full = crowded(jobs, cluster.capacity)
    quiet = calm(cluster, jobs, policy)  # of all jobs: the second pass below leaves some out
    allocation, problem = _allocate(cluster, jobs, policy, limits, full, quiet)
    if not policy.admission_pays:
        return allocation
    idle = cluster.capacity - sum(job.current_gpus for job in jobs)
    urgent = {job.key for job, table in zip(jobs, problem.tables, strict=True) if admitted_regardless(job, table, policy, full)}
    held = unpaid_admissions(allocation, idle, urgent)
    if not held:
        return allocation
    rest, _ = _allocate(cluster, [job for job in jobs if job.key not in held], policy, limits, full, quiet)
    decided = {d.key: d for d in rest.decisions}
    decisions = tuple(decided.get(d.key) or _held(d, allocation.next_free_s) for d in allocation.decisions)
    return dataclasses.replace(rest, decisions=decisions)


def _held(decision: Decision, wait_s: float) -> Decision:
    """A newcomer left waiting because making room for it does not pay."""
    reason = f"waits: making room would cost the running jobs more than the {wait_s:,.0f} s it would save"
    return dataclasses.replace(
        decision, target_gpus=0, placement=(), gain_s=0.0, cost_s=0.0, reason=reason, remaining_s=math.inf
    )


def _allocate(
    cluster: Cluster, jobs: Sequence[ElasticJob], policy: AllocatorPolicy, limits: Limits, full: bool, quiet: bool
) -> tuple[Allocation, Problem]:
    problem = _problem(cluster, jobs, policy, limits, quiet)
    order = admission_order(jobs, problem.tables, policy, full)
    plan = _free_plan(problem, order)
    _revert_where_better(problem, plan)
    quo = _status_quo(problem, order, policy)
    quo_value = problem.objective(quo) if quo is not None else None
    if quo is not None and quo_value is not None and quo_value >= problem.objective(plan):
        plan = quo
    decisions = tuple(_decision(problem, plan, j, policy, full) for j in range(len(jobs)))
    allocation = Allocation(
        decisions=decisions,
        objective=problem.objective(plan),
        status_quo_objective=quo_value,
        next_free_s=problem.next_free_s,
    )
    return allocation, problem


def _decision(problem: Problem, plan: Plan, job: int, policy: AllocatorPolicy, full: bool) -> Decision:
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
        reason=explain(spec, table, target, gain, cost, policy, full, problem.calm),
        remaining_s=remaining,
    )
