"""The allocator's knobs: fairness, how restarts and waiting are priced, starvation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class RestartPricing(Enum):
    """How a change of size is charged in the objective.

    * ``REMAINING_RUN`` (hpcsched): a job's speedup at a new size is its average over the time the
      new size is expected to pay off, including the pause: ``s * H / (H + R')`` with
      ``H = min(T, horizon_s)``, ``T`` the predicted remaining run at that size, and
      ``R' = R * (1 + hysteresis) * (1 + settle_s / time_at_size)``. With ``H = T`` and no settle
      term a size beats the current one exactly when the time saved, ``W / r_old - W / r_new``,
      exceeds ``R * (1 + hysteresis)``. A job that has not started is priced the same way for
      waiting until GPUs free up by themselves (:func:`~.objective.waiting_value`).
    * ``POLLUX``: Pollux's heuristic, ``s * max(age - restarts * delay, 0) / (age + delay)`` with a
      fixed ``delay`` (30 s), blind to the true cost and to the remaining run; waiting is not
      priced (a job left without GPUs scores as zero speedup).
    * ``NONE``: restarts are free.
    """

    REMAINING_RUN = "remaining-run"
    POLLUX = "pollux"
    NONE = "none"


@dataclass(frozen=True)
class AllocatorPolicy:
    """Knobs; the defaults are hpcsched's, :data:`POLLUX` is the Pollux-like baseline.

    * ``fairness_p``: exponent of the generalised mean of speedups (each over the job's fair
      share) that the allocator maximises: 1 is throughput, 0 the geometric mean, -1 (Pollux's
      default) leans to fairness, lower is fairer still.
    * ``hysteresis``: a resize must save ``1 + hysteresis`` times its restart cost.
    * ``settle_s``: the restart cost of a job that has been resized before is multiplied by
      ``1 + settle_s / time_at_size``, so a job resized a moment ago needs a much larger gain to
      be resized again (a job's first resize after its start pays the plain cost).
    * ``settle_climbs``: whether ``settle_s`` also damps a *climb*, a grow of a job that runs at
      the largest size it has run at (``ElasticJob.climbing``). Under the growth cap a job that
      scales reaches its size in doublings, each a grow right after the last; that is not the
      flip-flop ``settle_s`` is for (a climb never reverses a shrink), and damping it kept long
      jobs below their size for half an hour per doubling. False (tuned): a climb pays its
      restart with hysteresis, no settle term.
    * ``fair_recovery``: a job below its fair share that grows toward it is damped only over its
      own payoff window, ``1 + min(settle_s, T_new, horizon_s) / time_at_size``: without it a short
      job resized once early (while its best size was small) stayed far below its share to the end.
    * ``horizon_s``: a new size is assumed to pay off for at most this long, because the next
      arrival or departure will move the optimum again; pricing a resize against the whole
      remaining run makes restarts of long jobs look free, and they then absorb every change.
    * ``srpt_weight``: each job's term is weighted by ``(median T / T_j) ** srpt_weight``, ``T_j``
      its remaining time on an equal split of the cluster: shortest-remaining-first, which lowers
      the average completion time; Pollux does not use remaining work, hpcsched estimates it
      (:mod:`.remaining`).
    * ``srpt_range``: the weights are clipped to ``[1/srpt_range, srpt_range]``, so that a long
      job does not become so light that the allocator treats it as free buffer capacity (resizing
      it at every arrival and departure).
    * ``starvation_s``: a job waiting this long for its minimum is admitted ahead of running
      jobs, and may preempt one that has run at least as long (:mod:`.admission`).
    * ``short_s``: a waiting job predicted to finish within this time at its minimum is admitted
      ahead of everything, preempting if it must (0 disables).
    * ``never_ran_first``: when the jobs' minimums do not all fit (more jobs than GPUs), a waiting
      job that has never run ranks with the short jobs: admitted first and regardless, preempting
      the running job with the most work left. Before it has run nothing is known of its length
      (its remaining work is the undeclared prior, half an hour), so ``short_s`` cannot fire for
      it; least attained service (Tiresias) takes the job that has had no GPU time yet as the one
      most likely to be short, since training times are heavy-tailed. Without it such a job waited
      behind every running job until it starved (``starvation_s``).
    * ``calm_share`` and ``calm_hysteresis``: in a *calm* cluster, where every job runs and at
      least ``calm_share`` of the capacity is idle (:func:`~.allocate.calm`), a climbing job's
      grow pays its restart with ``calm_hysteresis`` instead of ``hysteresis``. The hysteresis
      guards against resizes that the next arrival or departure reverses; GPUs that half the
      cluster leaves idle with nobody waiting are not contested, and at low load (the 0.5x
      workloads, the Philly samples) the full hysteresis kept jobs at 16 GPUs where Pollux ran
      them on 28-32. ``math.inf`` never calls a cluster calm.
    * ``round_s``: the time between two allocation rounds, the least a deferred job waits.
    * ``pollux_delay_s``: the pause Pollux's restart penalty assumes.

    Without ``settle_s`` and ``horizon_s`` the Pollux workloads showed long jobs resized every few
    minutes, each resize individually paying for itself against hours of remaining run
    (docs/allocator.md has the numbers). ``horizon_s`` (900 s) was picked, with the step-time
    prior, by the first tuning run on Pollux workloads 1-4 at 1.0x load, ``settle_climbs`` (off)
    by the second, ``srpt_weight`` (3), ``srpt_range`` (8) and ``hysteresis`` (6) by the fourth,
    ``never_ran_first`` by the fifth and ``calm_share`` (0.5, at ``calm_hysteresis`` 0) by the sixth, on
    the same workloads (benchmarks/tune_allocator.py); the other knobs were set before, on all
    eight workloads.
    """

    fairness_p: float = -1.0
    pricing: RestartPricing = RestartPricing.REMAINING_RUN
    hysteresis: float = 6.0
    settle_s: float = 1800.0
    horizon_s: float = 900.0
    srpt_weight: float = 3.0
    srpt_range: float = 8.0
    starvation_s: float = 3600.0
    short_s: float = 600.0
    round_s: float = 60.0
    pollux_delay_s: float = 30.0
    price_waiting: bool = False
    settle_climbs: bool = False
    fair_recovery: bool = True
    admission_pays: bool = True
    never_ran_first: bool = True
    calm_share: float = 0.5
    calm_hysteresis: float = 0.0

    def __post_init__(self) -> None:
        nonnegative = (self.hysteresis, self.settle_s, self.srpt_weight, self.short_s, self.round_s, self.pollux_delay_s,
                       self.calm_share, self.calm_hysteresis)
        if min(nonnegative) < 0.0 or self.starvation_s <= 0.0 or self.horizon_s <= 0.0 or self.srpt_range < 1.0:
            raise ValueError(f"need non-negative knobs, positive starvation_s and horizon_s, srpt_range >= 1: {self}")

    def grow_hysteresis(self, calm: bool, climbing: bool) -> float:
        """The hysteresis a grow pays: ``calm_hysteresis`` for a climb in a calm cluster."""
        return self.calm_hysteresis if calm and climbing else self.hysteresis


HPCSCHED = AllocatorPolicy()
POLLUX = AllocatorPolicy(
    pricing=RestartPricing.POLLUX,
    hysteresis=0.0,
    settle_s=0.0,
    horizon_s=math.inf,
    srpt_weight=0.0,
    short_s=0.0,
    admission_pays=False,
    never_ran_first=False,
    calm_share=math.inf,
)
