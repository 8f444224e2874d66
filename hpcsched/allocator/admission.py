"""Who gets their minimum first when not every job's minimum fits.

Order, highest priority first:

0. waiting jobs predicted to finish within ``short_s`` at their minimum: when every GPU is held
   by jobs at their minimum (more jobs than GPUs), a job of a few minutes would otherwise wait
   for a departure; it preempts the job with the most work left instead (shortest remaining
   processing time first, at the price of one restart of a long job);
1. only when the cluster is :func:`crowded` (the minimums of all jobs do not fit together) and
   ``AllocatorPolicy.never_ran_first``: the starving jobs (3, below), then the waiting jobs that
   have never run, oldest first. Nothing is known yet of how long a job that never ran will take
   (its remaining work is the undeclared prior), so ``short_s`` cannot fire for it; least attained
   service (Tiresias) takes the job with no GPU time at all as the likeliest to be short, and
   without this rule it waited behind every running job until it starved, an hour. It preempts
   even a job admitted less than ``starvation_s`` ago (2, below); the starving jobs go first
   because otherwise a steady stream of newcomers, each protected once admitted, would keep a
   job that was preempted waiting for ever;
2. running jobs that started less than ``starvation_s`` ago: a job just admitted is not
   preempted again at once (that would only trade one waiting job for another);
3. jobs that have waited ``starvation_s`` or longer, longest wait first: age-based priority, so
   no job waits for ever (its wait is bounded by about ``starvation_s`` plus one ``starvation_s``
   per starving job ahead of it, as long as its minimum fits the cluster at all);
4. the other running jobs, shortest predicted remaining time at their minimum first: a job that
   must make room is the one with the most work left. It loses the least in proportion and, with
   the lowest remaining-time weight, the least in the objective; preempting the job that had run
   longest instead often stopped one close to its end, whose weight equals a short newcomer's, and
   the plan that admitted the newcomer then scored no better than leaving it waiting (one-minute
   jobs waited up to four rounds at twice the Pollux load);
5. the other waiting jobs, shortest predicted remaining time at their minimum first (shortest
   remaining processing time is what keeps the average completion time low), then oldest first.

Within that order each job's minimum is placed if it fits (capacity, packing, account limit);
a job that does not fit is skipped, so smaller jobs behind it may still start (backfill).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set

from .candidates import JobTable
from .decisions import Allocation, Decision
from .jobs import ElasticJob
from .policy import AllocatorPolicy


def starving(job: ElasticJob, policy: AllocatorPolicy) -> bool:
    return job.current_gpus == 0 and job.time_in_state_s >= policy.starvation_s


def crowded(jobs: Sequence[ElasticJob], capacity: int) -> bool:
    """More jobs than room: the minimums of all jobs, waiting ones included, do not fit together."""
    return sum(job.min_gpus for job in jobs) > capacity


SHORT, CROWDED, PROTECTED, STARVING, RUNNING, WAITING = range(6)


def _priority(job: ElasticJob, table: JobTable, policy: AllocatorPolicy, full: bool) -> tuple[int, int, float, float]:
    """The job's place in the module docstring's order: (class, rank within it, tie-breakers)."""
    remaining = job.remaining_work / table.goodput[0] if len(table.goodput) else math.inf
    if job.current_gpus > 0:
        if job.time_in_state_s < policy.starvation_s:
            return (PROTECTED, 0, job.time_in_state_s, -job.age_s)
        return (RUNNING, 0, remaining, -job.age_s)
    if remaining < policy.short_s:
        return (SHORT, 0, remaining, -job.age_s)
    las = full and policy.never_ran_first
    if starving(job, policy):
        return (CROWDED if las else STARVING, 0, -job.time_in_state_s, -job.age_s)
    if las and job.never_ran:
        return (CROWDED, 1, -job.age_s, remaining)
    return (WAITING, 0, remaining, -job.age_s)


def admitted_regardless(job: ElasticJob, table: JobTable, policy: AllocatorPolicy, full: bool = False) -> bool:
    """A waiting job that is short (``short_s``), starving, or in a ``full`` (:func:`crowded`)
    cluster has never run: admitted even where making room for it does not pay
    (:func:`unpaid_admissions`)."""
    return job.current_gpus == 0 and _priority(job, table, policy, full)[0] in (SHORT, CROWDED, STARVING)


def admission_order(
    jobs: Sequence[ElasticJob], tables: Sequence[JobTable], policy: AllocatorPolicy, full: bool = False
) -> list[int]:
    """Job indices in the order their minimums are placed (module docstring); ``full``: the
    cluster is :func:`crowded`."""
    return sorted(range(len(jobs)), key=lambda i: (*_priority(jobs[i], tables[i], policy, full), i))


def admission_shrinks(current: Mapping[str, int], targets: Mapping[str, int], idle: int) -> dict[str, int]:
    """The shrinks of a decision that make room for the waiting jobs it admits, and no more.

    ``current`` is every job's size now (0: waiting), ``targets`` the allocator's decision,
    ``idle`` the GPUs nobody holds. Between rounds (a job has just arrived) hpcsched applies only
    these: the largest shrinks first until the admitted jobs fit, and no grow. The rest of the
    decision waits for the next full pass, which may find the room already made. Returns the new
    size of each job to shrink; empty when the admitted jobs fit in what is idle.
    """
    needed = sum(t for key, t in targets.items() if current.get(key, 0) == 0 and t > 0) - idle
    shrinking = [k for k, n in current.items() if n > 0 and targets.get(k, 0) < n]
    shrinking.sort(key=lambda k: (targets.get(k, 0) - current[k], k))
    out: dict[str, int] = {}
    for key in shrinking:
        if needed <= 0:
            break
        out[key] = targets.get(key, 0)
        needed -= current[key] - out[key]
    return out


def shrink_loss(decision: Decision, wait_s: float) -> float:
    """Seconds a shrink to make room adds to the job's completion, over the ``wait_s`` the
    newcomer is spared: its restart pause, plus the progress it gives up running at the smaller
    size meanwhile, ``wait_s * (1 - T_old / T_new)`` (all of ``wait_s`` for a stop). Unknown
    remaining times (``nan``) count as no slowdown, so only the restart is charged."""
    if decision.target_gpus == 0:
        return decision.cost_s + wait_s
    new = decision.remaining_s
    old = new + decision.gain_s
    slowdown = 1.0 - old / new if math.isfinite(old) and math.isfinite(new) and new > 0 else 0.0
    return decision.cost_s + wait_s * max(slowdown, 0.0)


def _room_needers(allocation: Allocation, idle: int) -> list[Decision]:
    """The newcomers (current 0, target > 0) that do not fit in ``idle`` once the smallest ones
    have taken what is idle."""
    newcomers = sorted((d for d in allocation.decisions if d.current_gpus == 0 and d.target_gpus > 0),
                       key=lambda d: (d.target_gpus, d.key))
    needers = []
    for d in newcomers:
        if d.target_gpus <= idle:
            idle -= d.target_gpus
        else:
            needers.append(d)
    return needers


def admission_pays(allocation: Allocation, shrinks: Mapping[str, int], idle: int) -> bool:
    """Whether the shrinks that make room save more completion time than they cost.

    Without them, a newcomer that does not fit in the ``idle`` GPUs waits until a job ends by
    itself (``allocation.next_free_s``, ``D``); with them it starts once the largest shrink has
    freed its GPUs, ``D - R`` sooner (``R`` that shrink's restart pause). Each shrunk job loses
    :func:`shrink_loss` over the time it runs smaller: until a job ends or the newcomers are done,
    ``min(D, R + T_newcomer)``. The admission pass applies the shrinks only when the newcomers'
    summed gain exceeds the summed loss: the sum of completion times (the average JCT) then falls.
    """
    if not shrinks:
        return True
    by_key = {d.key: d for d in allocation.decisions}
    wait = allocation.next_free_s
    if not math.isfinite(wait):
        return True
    spared = _room_needers(allocation, idle)
    start = max(by_key[key].cost_s for key in shrinks)
    gain = len(spared) * max(wait - start, 0.0)
    # The shrunk jobs run smaller until a job ends (wait) or the newcomers are done with the room.
    window = min(wait, start + max((d.remaining_s for d in spared), default=0.0))
    return gain > sum(shrink_loss(by_key[key], window) for key in shrinks)


def unpaid_admissions(allocation: Allocation, idle: int, urgent: Set[str]) -> set[str]:
    """The waiting jobs to leave waiting: those that need room made by shrinks which do not pay
    (:func:`admission_pays`), except the ``urgent`` ones; empty when the shrinks pay."""
    decisions = allocation.decisions
    shrinks = admission_shrinks({d.key: d.current_gpus for d in decisions}, {d.key: d.target_gpus for d in decisions}, idle)
    if admission_pays(allocation, shrinks, idle):
        return set()
    return {d.key for d in _room_needers(allocation, idle)} - set(urgent)


def admission(allocation: Allocation, idle: int) -> dict[str, int]:
    """What the admission pass applies between rounds: the :func:`admission_shrinks` of a decision.
    :func:`~.allocate.allocate` has already left waiting the newcomers whose room does not pay
    (``AllocatorPolicy.admission_pays``)."""
    decisions = allocation.decisions
    return admission_shrinks({d.key: d.current_gpus for d in decisions}, {d.key: d.target_gpus for d in decisions}, idle)
