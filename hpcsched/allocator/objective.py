"""The quantity the allocator maximises: a generalised mean of restart-priced speedups.

Per job, ``x = goodput(size) / goodput(fair share)``: how much faster than on its fair share of
the cluster it runs (Pollux measures every speedup against the fair share too, so that a job that
scales well is not given everything). A size other than the current one is priced for its
restart (:class:`~.policy.RestartPricing`). The jobs' ``x`` enter through the Box-Cox transform
``phi_p(x) = ((x + eps)**p - 1) / p`` (``log(x + eps)`` at ``p = 0``), whose sum ranks allocations
exactly as the generalised mean with exponent ``p`` does, stays finite for a job left at zero
(``eps``, as in Pollux), and keeps increasing in ``x`` for every ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .candidates import FloatArray, IntArray, JobTable
from .jobs import ElasticJob
from .policy import AllocatorPolicy, RestartPricing

EPSILON = 1e-3


def phi(x: FloatArray | float, p: float) -> FloatArray:
    """Box-Cox transform of ``x + EPSILON`` (module docstring)."""
    shifted = np.asarray(x, np.float64) + EPSILON
    if p == 0.0:
        return np.asarray(np.log(shifted), np.float64)
    return np.asarray((shifted**p - 1.0) / p, np.float64)


def restart_factor(job: ElasticJob, table: JobTable, policy: AllocatorPolicy, fair_gpus: int, calm: bool = False) -> FloatArray:
    """Multiplier of each candidate's speedup for the restart it implies (1 at the current size);
    ``calm``: a climbing job's grows pay ``calm_hysteresis`` (:class:`~.policy.AllocatorPolicy`)."""
    sizes = table.sizes
    if policy.pricing is RestartPricing.NONE:
        factor = np.ones(len(sizes))
    elif policy.pricing is RestartPricing.POLLUX:
        delay = policy.pollux_delay_s
        kept = max(job.age_s - job.restarts * delay, 0.0) / (job.age_s + delay) if job.age_s + delay > 0 else 1.0
        factor = np.full(len(sizes), kept if job.current_gpus else 1.0)
    else:
        payoff = np.minimum(table.remaining_time(job.remaining_work), policy.horizon_s)
        restart = np.array([job.restart.seconds(job.current_gpus, int(s)) for s in sizes])
        hysteresis = np.where(sizes > job.current_gpus, policy.grow_hysteresis(calm, job.climbing), policy.hysteresis)
        pause = restart * (1.0 + hysteresis) * settle_factor(job, sizes, payoff, policy, fair_gpus)
        with np.errstate(invalid="ignore"):
            factor = np.where(np.isinf(payoff), 1.0, payoff / (payoff + pause))
        factor = np.where(pause == 0.0, 1.0, factor)
    return np.where(sizes == job.current_gpus, 1.0, factor)


def settle_factor(job: ElasticJob, sizes: IntArray, payoff: FloatArray, policy: AllocatorPolicy, fair_gpus: int) -> FloatArray:
    """``1 + window / time_at_size`` per candidate for a job resized before (1 for others): the
    resizes that may still follow within ``window`` at the job's present pace, each costing a
    restart. The window is ``settle_s``; for a grow of a job below its fair share toward it
    (``fair_recovery``) it is only the new size's payoff window (``min(T_new, horizon_s)``): that
    grow restores a shortfall rather than chasing arrivals and departures, and a job with ten
    minutes left cannot flip-flop for half an hour. A climbing job's grows have no window unless
    ``settle_climbs`` (:class:`~.policy.AllocatorPolicy`)."""
    if not (job.current_gpus and job.restarts):
        return np.ones(len(sizes))
    window = np.full(len(sizes), policy.settle_s)
    if policy.fair_recovery:
        toward = (sizes > job.current_gpus) & (sizes <= fair_gpus)
        window = np.where(toward, np.minimum(window, payoff), window)
    if job.climbing and not policy.settle_climbs:
        window = np.where(sizes > job.current_gpus, 0.0, window)
    return np.asarray(1.0 + window / max(job.time_at_size_s, 1.0), np.float64)


def fair_goodput(table: JobTable, fair_gpus: int) -> float:
    """Goodput at the largest candidate not above ``fair_gpus`` (the smallest if none is)."""
    below = np.flatnonzero(table.sizes <= fair_gpus)
    return float(table.goodput[below[-1]] if len(below) else table.goodput[0])


def job_values(job: ElasticJob, table: JobTable, policy: AllocatorPolicy, fair_gpus: int, calm: bool = False) -> FloatArray:
    """``phi_p`` of each candidate's priced speedup over the fair share (``calm``: as for
    :func:`restart_factor`)."""
    x = table.goodput / fair_goodput(table, fair_gpus) * restart_factor(job, table, policy, fair_gpus, calm)
    return phi(x, policy.fairness_p)


def zero_value(policy: AllocatorPolicy) -> float:
    """What a job left without GPUs contributes."""
    return float(phi(0.0, policy.fairness_p))


def waiting_value(job: ElasticJob, table: JobTable, policy: AllocatorPolicy, fair_gpus: int, next_free_s: float) -> float:
    """What a job that has not started yet contributes if it is left waiting: its minimum, priced
    for a delay until GPUs free up by themselves (``next_free_s``, when the first running job is
    predicted to finish). Waiting is a cost like a restart: a short job loses most of its speed,
    a long one little, so a long newcomer may wait for a departure instead of forcing a resize.
    A stopped running job contributes :func:`zero_value`."""
    priced = policy.pricing is RestartPricing.REMAINING_RUN and policy.price_waiting
    if not priced or job.current_gpus or len(table.sizes) == 0 or not math.isfinite(next_free_s):
        return zero_value(policy)
    remaining = float(table.remaining_time(job.remaining_work)[0])
    if not math.isfinite(remaining):
        return zero_value(policy)
    delay = max(next_free_s, policy.round_s)
    x = table.goodput[0] / fair_goodput(table, fair_gpus) * remaining / (remaining + delay)
    return float(phi(x, policy.fairness_p))


def next_departure(jobs: Sequence[ElasticJob], tables: Sequence[JobTable]) -> float:
    """Predicted seconds until the first running job finishes at its current size."""
    times = [
        job.remaining_work / float(table.goodput[table.index_of(job.current_gpus)])
        for job, table in zip(jobs, tables, strict=True)
        if job.current_gpus and table.index_of(job.current_gpus) >= 0
    ]
    return min(times, default=math.inf)


def time_saved(table: JobTable, job: ElasticJob, current: int, target: int) -> float:
    """``W / r(current) - W / r(target)``: seconds the job finishes earlier at ``target`` (before
    its restart); +inf when it starts, -inf when it is stopped."""
    if current == target:
        return 0.0
    if current == 0:
        return math.inf
    if target == 0:
        return -math.inf
    old, new = table.index_of(current), table.index_of(target)
    if old < 0 or math.isinf(job.remaining_work):
        return math.nan
    return float(job.remaining_work / table.goodput[old] - job.remaining_work / table.goodput[new])
