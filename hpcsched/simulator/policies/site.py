"""Site mode on a shared cluster: plain (rigid) Slurm jobs and hpcsched's elastic jobs together.

* Rigid jobs (``JobSpec.rigid``) go through the Slurm model: their submitted size, first come
  first served with EASY backfill, exact run-time estimates (as :mod:`.static`), never resized.
  They count GPUs, not node placements: the model is of the GPU count only.
* Elastic jobs are sized by :func:`hpcsched.allocator.allocate` (fairness between users included)
  in what the rigid jobs leave, with the good-citizen rules (docs/fairness.md):

  - the queue sees every running elastic job at its minimum (1 GPU), which it gives back at the
    time limit of a run at that size: when shrinking elastic jobs lets a waiting rigid job start
    now, it starts and the elastic jobs shrink (in place, paying the restart model's shrink);
  - a running elastic job is never stopped, only shrunk to its minimum, as the coordinator acts
    (:func:`.elastic.never_stopped`: the allocator's stops keep their minimum, and the elastic
    newcomers that would have taken those GPUs wait);
  - a waiting elastic job queues at its minimum in Slurm's order (the coordinator sizes a waiting
    elastic job down so that it can start), and the allocator sizes it once it runs;
  - while a rigid job is blocked (even shrinking every elastic job would not start it), elastic
    jobs grow only into the idle GPUs its reservation leaves spare (those it will not need when
    it starts: Slurm's backfill starts a grow's new allocation there and nowhere else), a grow's
    whole larger allocation must fit there beside the old one (:func:`whole_grows`), and a
    waiting elastic job starts only where backfill lets it.

Elastic jobs plan with the simulator's current information (the fitted step-time models, the
work their scripts declare), as :mod:`.elastic` does, and grow make-before-break.
``SitePolicy(oracle=True)`` (``site-oracle``) tells them the truth instead: a labelled upper
bound on what better information could give under the same rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from hpcsched.allocator import HPCSCHED, Cluster, allocate
from hpcsched.site.citizen import fit_grows, planned_start

from ..jobs import Config, SimJob, fixed_config
from ..restarts import RestartModel
from .elastic import ElasticPolicy, never_stopped
from .static import predicted_end

ELASTIC_MIN_GPUS = 1


def whole_grows(jobs: Sequence[SimJob], targets: Mapping[str, int], free: int) -> dict[str, int]:
    """While a rigid job is blocked, the sizes running elastic jobs' grows are cut to
    (:func:`hpcsched.site.citizen.fit_grows`): what fits whole beside the old allocation in
    ``free`` (the GPUs neither rigid jobs hold nor the blocked job keeps) less what the elastic
    jobs keep and what waiting ones start on."""
    elastic = [j for j in jobs if not j.spec.rigid]
    free -= sum(min(j.gpus, targets.get(j.name, 0)) if j.gpus else targets.get(j.name, 0) for j in elastic)
    return fit_grows(((j.name, j.gpus, targets.get(j.name, 0)) for j in elastic
                      if j.gpus and targets.get(j.name, 0) > j.gpus), free)


def foreign_cluster(cluster: Cluster, held: int) -> Cluster:
    """``cluster`` with ``held`` GPUs taken by rigid jobs, packed onto the first nodes."""
    foreign: dict[int, int] = {}
    for node, free in enumerate(cluster.free_gpus()):
        if held <= 0:
            break
        foreign[node] = min(free, held)
        held -= foreign[node]
    return dataclasses.replace(cluster, foreign_gpus=foreign)


class SitePolicy(ElasticPolicy):
    def __init__(self, oracle: bool = False) -> None:
        super().__init__("site-oracle" if oracle else "site", HPCSCHED, on_arrival=True, before_break=True, oracle=oracle,
                         stops=False)

    def rigid_size(self, job: SimJob) -> int:
        return max(1, min(job.spec.num_replicas, self._capacity))

    def config(self, job: SimJob, gpus: int) -> Config:
        return fixed_config(job.app, gpus, job.spec.batch_size) if job.spec.rigid else super().config(job, gpus)

    def max_gpus(self, job: SimJob) -> int:
        return self.rigid_size(job) if job.spec.rigid else super().max_gpus(job)

    def _queue_size(self, job: SimJob) -> int:
        """What the job asks Slurm for: a rigid job its submitted size; a waiting elastic job its
        minimum (the coordinator sizes a waiting elastic job down so that it can start)."""
        return self.rigid_size(job) if job.spec.rigid else ELASTIC_MIN_GPUS

    def _slurm_starts(
        self, now: float, jobs: Sequence[SimJob], free: int, restart: RestartModel
    ) -> tuple[dict[str, int], tuple[float, int] | None]:
        """Slurm's FIFO with EASY backfill over ``free`` GPUs, each waiting job at
        :meth:`_queue_size`: the jobs that start now, and the blocked rigid job's reservation
        (when it starts, the GPUs spare then), None when no rigid job is blocked."""
        ends = sorted(self._held_until(j, now, restart) for j in jobs if j.gpus)
        queue = sorted((j for j in jobs if not j.gpus), key=lambda j: (j.spec.submit_time, j.name))
        starts: dict[str, int] = {}
        shadow: tuple[float, int] | None = None  # when the head can start, and the GPUs spare then
        for job in queue:
            size = self._queue_size(job)
            end = predicted_end(job, size, self.config(job, size), now, restart)
            if shadow is None and size > free:
                shadow = planned_start(size, free, ends) if job.spec.rigid else None
                continue
            if size > free or (shadow is not None and end > shadow[0] and size > shadow[1]):
                continue
            starts[job.name], free = size, free - size
            if shadow is not None and end > shadow[0]:
                shadow = (shadow[0], shadow[1] - size)
            ends = sorted([*ends, (end, size)])
        return starts, shadow

    def _held_until(self, job: SimJob, now: float, restart: RestartModel) -> tuple[float, int]:
        """When a running job gives GPUs back to the queue, and how many: a rigid job all of them
        at its time limit; an elastic job its minimum (all the queue counts it at), at the time
        limit of a run at its minimum."""
        size = job.gpus if job.spec.rigid else ELASTIC_MIN_GPUS
        return predicted_end(job, size, self.config(job, size), now, restart), size

    def decide(self, now: float, jobs: Sequence[SimJob], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        self._capacity = cluster.capacity
        held = sum(job.gpus for job in jobs if job.spec.rigid)
        floor = ELASTIC_MIN_GPUS * sum(1 for job in jobs if job.gpus and not job.spec.rigid)
        starts, shadow = self._slurm_starts(now, jobs, cluster.capacity - held - floor, restart)
        rigid = {j.name for j in jobs if j.spec.rigid}
        rigid_starts = {name: size for name, size in starts.items() if name in rigid}
        held += sum(rigid_starts.values())
        targets = {job.name: job.gpus for job in jobs if job.spec.rigid and job.gpus} | rigid_starts
        if shadow is not None:  # the idle GPUs the blocked job's reservation needs are kept for it
            elastic = sum(j.gpus for j in jobs if not j.spec.rigid) + sum(starts.values()) - sum(rigid_starts.values())
            held += max(0, cluster.capacity - held - elastic - shadow[1])
        load = len(jobs) / max(cluster.capacity, 1)
        admitted = [j for j in jobs if not j.spec.rigid and (j.gpus or j.name in starts or shadow is None)]
        requests = [self._elastic(job, now, restart, load) for job in admitted]
        if requests:
            shared = foreign_cluster(cluster, held)
            targets |= never_stopped(allocate(shared, requests, self.allocator).targets(), admitted, shared.capacity)
            if shadow is not None:
                targets |= whole_grows(jobs, targets, cluster.capacity - held)
        idle = cluster.capacity - sum(targets.values())
        for name, size in starts.items():  # Slurm starts what its queue let start, paid or not
            if not targets.get(name) and size <= idle:
                targets[name], idle = size, idle - size
        return targets

    def admit(
        self, now: float, jobs: Sequence[SimJob], cluster: Cluster, restart: RestartModel
    ) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """As in a round; the elastic jobs' shrinks apply only when the decision starts a waiting job."""
        targets = self.decide(now, jobs, cluster, restart)
        starts = any(not job.gpus and targets.get(job.name, 0) for job in jobs)
        shrinks = {j.name: targets.get(j.name, 0) for j in jobs if not j.spec.rigid and targets.get(j.name, 0) < j.gpus}
        return targets, shrinks if starts else {}
