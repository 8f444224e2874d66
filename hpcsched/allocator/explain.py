"""One sentence per decision, for ``hpcsched status`` and the daemon's decision log."""

from __future__ import annotations

import math

from hpcsched.planning.fields import format_count

from .admission import starving
from .candidates import JobTable
from .jobs import ElasticJob
from .policy import AllocatorPolicy


def _s(seconds: float) -> str:
    return f"{seconds:,.0f} s" if math.isfinite(seconds) else "unknown time"


def _waiting(job: ElasticJob, table: JobTable, policy: AllocatorPolicy) -> str:
    if len(table.sizes) == 0:
        return f"waits: its minimum of {format_count(job.min_gpus, 'GPU')} exceeds the capacity or the node limits"
    waited = f"waited {_s(job.time_in_state_s)}"
    if starving(job, policy):
        return f"waits: {waited} (starving) but its minimum does not fit the free nodes or its account's limit"
    return f"waits: {waited}; its minimum of {format_count(job.min_gpus, 'GPU')} does not fit behind jobs of higher priority"


def explain(job: ElasticJob, table: JobTable, target: int, gain: float, cost: float, policy: AllocatorPolicy,
            full: bool = False, calm: bool = False) -> str:
    """Why ``job`` goes from its current size to ``target``; ``full``: the cluster is crowded
    (:func:`.admission.crowded`), ``calm``: every job runs and much of it is idle
    (:func:`.allocate.calm`)."""
    current = job.current_gpus
    pause = f"restart {_s(cost)}"
    if target == 0:
        if current:
            return f"stops ({pause}): its GPUs go to jobs that waited longer or to new jobs' minimums"
        return _waiting(job, table, policy)
    if current == 0:
        if starving(job, policy):
            why = "starving, admitted first"
        elif full and policy.never_ran_first and job.never_ran:
            why = f"never ran, admitted first where jobs outnumber GPUs; waited {_s(job.time_in_state_s)}"
        else:
            why = f"waited {_s(job.time_in_state_s)}"
        return f"starts on {format_count(target, 'GPU')} ({why}; start {_s(cost)})"
    if target == current:
        return f"keeps {format_count(current, 'GPU')}: no change saves more than it costs"
    change = f"{current}->{format_count(target, 'GPU')}"
    if target > current:
        why = f": {policy.calm_share:.0%} or more of the GPUs idle, nobody waiting" if calm and job.climbing else " hysteresis"
        factor = 1 + policy.grow_hysteresis(calm, job.climbing)
        return f"grows {change}: finishes {_s(gain)} earlier, {pause} (x{factor:.2f}{why})"
    return (
        f"shrinks {change}: finishes {_s(-gain)} later plus {pause}, outweighed by what its GPUs do for "
        f"other jobs (fairness p={policy.fairness_p:g})"
    )
