"""A realistic Slurm: the multifactor priority plugin with the backfill scheduler, rigid jobs.

Every job runs at the size it was submitted with (as :mod:`.static`), never resized or
preempted. Pending jobs are ordered by Slurm's multifactor priority (``PriorityType=
priority/multifactor``) and scheduled by conservative backfill (``SchedulerType=sched/backfill``):

* priority = ``age_weight * min(age / max_age_s, 1) + size_weight * GPUs / capacity +
  fairshare_weight * 2 ** (-usage / shares)`` (Slurm's classic fair-share factor: ``usage`` the
  user's share of all GPU-seconds used so far, decayed with ``decay_half_life_s``; ``shares`` an
  equal part per user). A large job ranks higher (Slurm's default, ``PriorityFavorSmall=NO``), an
  old one higher, a user who has used less than an equal share higher;
* in priority order each job starts now if its GPUs are free and can be placed, else it gets a
  reservation at the earliest time the GPUs left by the running jobs (ending at their time
  limits) and by the reservations before it allow; a lower-priority job starts now only if it
  delays none of those reservations (Slurm's backfill reserves for every job it tests, not only
  the first as EASY backfill does).

Time limits are the jobs' exact run times (:meth:`JobView.time_limit`), as for ``static``: real
limits are generous, so this baseline is, if anything, better than the real thing. The weights
are a plausible site configuration, not tuned on any workload (:class:`Multifactor`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpcsched.allocator import Cluster
from hpcsched.allocator.placement import NodeLedger

from ..jobs import JobView
from ..restarts import RestartModel
from .static import StaticPolicy


@dataclass(frozen=True)
class Multifactor:
    """``PriorityWeightAge``, ``PriorityWeightJobSize``, ``PriorityWeightFairshare``,
    ``PriorityMaxAge`` and ``PriorityDecayHalfLife`` (Slurm's default half-life, 7 days)."""

    age_weight: float = 1000.0
    size_weight: float = 1000.0
    fairshare_weight: float = 1000.0
    max_age_s: float = 86400.0
    decay_half_life_s: float = 7 * 86400.0

    def __post_init__(self) -> None:
        if min(self.age_weight, self.size_weight, self.fairshare_weight) < 0 or min(self.max_age_s, self.decay_half_life_s) <= 0:
            raise ValueError(f"need non-negative weights and positive max_age_s, decay_half_life_s: {self}")


@dataclass
class FairShare:
    """Each user's decayed GPU-seconds, from the jobs' run times as Slurm accounts them."""

    half_life_s: float
    usage: dict[str, float] = field(default_factory=dict)
    _seen: dict[str, float] = field(default_factory=dict)  # executed seconds already charged, per job
    _last: float = 0.0

    def charge(self, now: float, jobs: Sequence[JobView]) -> None:
        decay = 0.5 ** ((now - self._last) / self.half_life_s)
        self.usage = {user: used * decay for user, used in self.usage.items()}
        for job in jobs:
            self.usage.setdefault(job.spec.user, 0.0)
            self.usage[job.spec.user] += (job.executed_s - self._seen.get(job.name, 0.0)) * job.gpus
            self._seen[job.name] = job.executed_s
        self._last = now

    def factor(self, user: str) -> float:
        """Slurm's classic ``2 ** (-U / S)``: 1 for a user who used nothing, 0.5 at an equal share."""
        total = sum(self.usage.values())
        shares = 1.0 / max(len(self.usage), 1)
        return 2.0 ** (-(self.usage.get(user, 0.0) / total) / shares) if total > 0 else 1.0


class FreeProfile:
    """Free GPUs over future time, as a step function: ``free[i]`` from ``times[i]`` on."""

    def __init__(self, now: float, free: int) -> None:
        self.times, self.free = [now], [free]

    def _split(self, at: float) -> int:
        """The index of the step starting at ``at`` (made if needed)."""
        i = bisect.bisect_right(self.times, at) - 1
        if self.times[i] != at:
            self.times.insert(i + 1, at)
            self.free.insert(i + 1, self.free[i])
            i += 1
        return i

    def hold(self, start: float, end: float, gpus: int) -> None:
        """Take ``gpus`` from ``start`` to ``end`` (a negative count gives them back)."""
        first = self._split(start)
        last = self._split(end) if math.isfinite(end) else len(self.times)
        for i in range(first, last):
            self.free[i] -= gpus

    def earliest(self, gpus: int, duration: float, later_than: float = -math.inf) -> float:
        """The first step start after ``later_than`` from which ``gpus`` stay free for
        ``duration`` (inf: never)."""
        for i, start in enumerate(self.times):
            ends = start + duration
            if start <= later_than:
                continue
            if all(self.free[k] >= gpus for k in range(i, len(self.times)) if self.times[k] < ends):
                return start
        return math.inf


class SlurmBackfillPolicy(StaticPolicy):
    """``slurm-backfill`` (module docstring); sizes and batches as ``static`` (or its
    ``realistic`` variant)."""

    def __init__(self, realistic: bool = False, weights: Multifactor | None = None) -> None:
        super().__init__(realistic)
        self.name = "slurm-backfill-realistic" if realistic else "slurm-backfill"
        self.weights = weights or Multifactor()
        self.fairshare = FairShare(self.weights.decay_half_life_s)

    def priority(self, job: JobView, now: float, cluster: Cluster) -> float:
        w = self.weights
        age = min(max(now - job.spec.submit_time, 0.0) / w.max_age_s, 1.0)
        size = self._size(job, cluster) / max(cluster.capacity, 1)
        return w.age_weight * age + w.size_weight * size + w.fairshare_weight * self.fairshare.factor(job.spec.user)

    def decide(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        ledger = self._sync(jobs, cluster)
        self.fairshare.charge(now, jobs)
        by_name = {job.name: job for job in jobs}
        profile = FreeProfile(now, sum(ledger.free))
        for name, size in self._running.items():
            profile.hold(self._ends(by_name[name], size, now, restart), math.inf, -size)  # given back at its end
        pending = [job for job in jobs if job.name not in self._running]
        pending.sort(key=lambda j: (-self.priority(j, now, cluster), j.spec.submit_time, j.name))
        for job in pending:
            size = self._size(job, cluster)
            duration = self._ends(job, size, now, restart) - now
            start = profile.earliest(size, duration)
            if start == now and not ledger.place(self._ids[job.name], size):  # free, but not on few enough nodes
                start = profile.earliest(size, duration, later_than=now)
            if start == now:
                self._running[job.name] = size
            profile.hold(start, start + duration, size)
        return dict(self._running)

    def _sync(self, jobs: Sequence[JobView], cluster: Cluster) -> NodeLedger:
        """The node ledger with the jobs that ended released and every job given an id."""
        if self._ledger is None:
            self._ledger = NodeLedger(cluster.free_gpus(), cluster.gpus_per_node)
        present = {job.name for job in jobs}
        for name in [n for n in self._running if n not in present]:
            self._ledger.release(self._ids[name])
            del self._running[name]
        for job in jobs:
            self._ids.setdefault(job.name, len(self._ids))
        return self._ledger

