"""Who gets their minimum first when not every job's minimum fits.

Order, highest priority first:

0. waiting jobs predicted to finish within ``short_s`` at their minimum: when every GPU is held
   by jobs at their minimum (more jobs than GPUs), a job of a few minutes would otherwise wait
   for a departure; it preempts the job with the most work left instead (shortest remaining
   processing time first, at the price of one restart of a long job);
1. running jobs that started less than ``starvation_s`` ago: a job just admitted is not
   preempted again at once (that would only trade one waiting job for another);
2. jobs that have waited ``starvation_s`` or longer, longest wait first: age-based priority, so
   no job waits for ever (its wait is bounded by about ``starvation_s`` plus one ``starvation_s``
   per starving job ahead of it, as long as its minimum fits the cluster at all);
3. the other running jobs, shortest predicted remaining time at their minimum first: a job that
   must make room is the one with the most work left. It loses the least in proportion and, with
   the lowest remaining-time weight, the least in the objective; preempting the job that had run
   longest instead often stopped one close to its end, whose weight equals a short newcomer's, and
   the plan that admitted the newcomer then scored no better than leaving it waiting (one-minute
   jobs waited up to four rounds at twice the Pollux load);
4. the other waiting jobs, shortest predicted remaining time at their minimum first (shortest
   remaining processing time is what keeps the average completion time low), then oldest first.

Within that order each job's minimum is placed if it fits (capacity, packing, account limit);
a job that does not fit is skipped, so smaller jobs behind it may still start (backfill).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .candidates import JobTable
from .jobs import ElasticJob
from .policy import AllocatorPolicy


def starving(job: ElasticJob, policy: AllocatorPolicy) -> bool:
    return job.current_gpus == 0 and job.time_in_state_s >= policy.starvation_s


def _priority(job: ElasticJob, table: JobTable, policy: AllocatorPolicy) -> tuple[int, float, float]:
    remaining = job.remaining_work / table.goodput[0] if len(table.goodput) else math.inf
    if job.current_gpus > 0:
        if job.time_in_state_s < policy.starvation_s:
            return (1, job.time_in_state_s, -job.age_s)
        return (3, remaining, -job.age_s)
    if starving(job, policy):
        return (2, -job.time_in_state_s, -job.age_s)
    return (0 if remaining < policy.short_s else 4, remaining, -job.age_s)


def admission_order(jobs: Sequence[ElasticJob], tables: Sequence[JobTable], policy: AllocatorPolicy) -> list[int]:
    """Job indices in the order their minimums are placed (module docstring)."""
    return sorted(range(len(jobs)), key=lambda i: (*_priority(jobs[i], tables[i], policy), i))


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
