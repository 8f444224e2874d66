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
from collections.abc import Sequence

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
