"""The elastic policies, both driven by :func:`hpcsched.allocator.allocate` (the very code the
daemon runs) and both re-tuning each job's batch with :func:`hpcsched.models.best_config`:

* ``hpcsched``: restarts priced over each job's remaining run at the restart model's expected
  cost (queue wait included), with hysteresis; its grows are make-before-break (the job trains
  on at its old size while the larger allocation waits in Slurm's queue);
* ``pollux``: Pollux's own restart penalty (a fixed 30 s assumed, whatever a restart really
  costs), no hysteresis; every change is a checkpoint-restart.

hpcsched's jobs are Slurm jobs, and its daemon runs an admission pass for a job that waits for
nodes, so a job that arrives between rounds starts then if the allocator makes room for it
(:meth:`admit`); Pollux decides in rounds only. The simulation gives both the same timing
(:mod:`hpcsched.simulator.engine`).

Both see each job as :mod:`hpcsched.simulator.knowledge` builds it: the step-time model fitted
to the configurations it has run, its measured gradient noise, and the work it declared. Like
Pollux, a job may grow to at most twice the largest size it has run at (``explore``, Pollux's
growth cap): its fitted model has only seen that much. ``oracle=True`` hands the policy the
truth instead (the true models and remaining work): an upper bound, named ``...-oracle``.

``stops=False`` (``hpcsched-nostop``) is hpcsched as the daemon and the coordinator act today: a
running job the allocator would stop keeps its minimum (one GPU here), and the waiting jobs that
would have taken its GPUs wait, the latest submitted first (:func:`never_stopped`); figures
beside ``hpcsched`` show what the simulator's preemption is worth.

Remaining work is what the daemon could know: :func:`hpcsched.allocator.estimate_remaining_work`
from the progress the job has made and the total its script declares (``declared=False``: as if
no script declared one), never the simulation's true total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hpcsched.allocator import (
    HPCSCHED,
    POLLUX,
    Allocation,
    AllocatorPolicy,
    Cluster,
    ElasticJob,
    GoodputModel,
    admission,
    allocate,
    estimate_remaining_work,
    undeclared_prior,
)
from hpcsched.models import DEFAULT_PRIOR, POLLUX_PRIOR, ThroughputPrior

from ..jobs import Config, JobView
from ..knowledge import adaptive_choice
from ..restarts import RestartModel


class ElasticPolicy:
    def __init__(
        self,
        name: str,
        allocator: AllocatorPolicy,
        explore: bool = False,
        declared: bool = True,
        on_arrival: bool = False,
        oracle: bool = False,
        before_break: bool = False,
        prior: ThroughputPrior = DEFAULT_PRIOR,
        stops: bool = True,
    ) -> None:
        self.name = name
        self.stops = stops
        self.prior = prior
        self.grows_before_break = before_break
        self.oracle = oracle
        self.decides_on_arrival = on_arrival
        self.allocator = allocator
        self.explore = explore
        self.declared = declared
        self._capacity = 1 << 30

    def config(self, job: JobView, gpus: int) -> Config:
        return adaptive_choice(job, gpus)

    def max_gpus(self, job: JobView) -> int:
        return max(1, min(job.app.max_gpus, self._capacity))

    def _limit(self, job: JobView) -> int:
        cap = self.max_gpus(job)
        return min(cap, max(1, 2 * job.largest, job.gpus)) if self.explore else cap

    def _remaining_work(self, job: JobView, model: GoodputModel) -> float:
        """The estimate from the progress the job reports and the total it declared, if any."""
        planned = job.declared_work if self.declared else None
        return estimate_remaining_work(job.work_done, planned, prior=undeclared_prior(model, 1, job.gpus_per_node))

    def _elastic(self, job: JobView, now: float, restart: RestartModel, load: float) -> ElasticJob:
        model = GoodputModel(job.params, job.noise, job.app.limits)
        return ElasticJob(
            key=job.name,
            model=model,
            min_gpus=1,
            max_gpus=self._limit(job),
            current_gpus=job.gpus,
            remaining_work=self._remaining_work(job, model),
            age_s=now - job.spec.submit_time,
            time_in_state_s=now - job.state_since,
            time_at_size_s=now - job.size_since,
            restarts=job.restarts,
            restart=restart.expected(load, self.grows_before_break),
            user=job.spec.user,
            climbing=0 < job.largest <= job.gpus,
            never_ran=job.largest == 0 and job.gpus == 0,
        )

    def _allocate(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Allocation:
        self._capacity = cluster.capacity
        load = len(jobs) / max(cluster.capacity, 1)
        requests = [self._elastic(job, now, restart, load) for job in jobs]
        return allocate(cluster, requests, self.allocator)

    def decide(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        targets = self._allocate(now, jobs, cluster, restart).targets()
        return targets if self.stops else never_stopped(targets, jobs, cluster.capacity)

    def admit(
        self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel
    ) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """The daemon's admission pass: :func:`hpcsched.allocator.admission` of a decision."""
        allocation = self._allocate(now, jobs, cluster, restart)
        idle = cluster.capacity - sum(job.gpus for job in jobs)
        targets, room = allocation.targets(), admission(allocation, idle)
        if self.stops:
            return targets, room
        return never_stopped(targets, jobs, cluster.capacity), {name: max(size, 1) for name, size in room.items()}


def never_stopped(targets: Mapping[str, int], jobs: Sequence[JobView], capacity: int) -> dict[str, int]:
    """``targets`` as the daemon carries them out: a running job set to 0 keeps one GPU (its
    minimum), and the newcomers that no longer fit wait, the latest submitted first (Slurm starts
    the earlier ones); if that is not enough, the grows give the GPUs back, the largest first."""
    out = dict(targets)
    by_name = {job.name: job for job in jobs}
    for name, size in targets.items():
        if size == 0 and by_name[name].gpus > 0:
            out[name] = 1
    over = sum(out.values()) - capacity
    newcomers = sorted((n for n, size in out.items() if size and by_name[n].gpus == 0),
                       key=lambda n: by_name[n].spec.submit_time, reverse=True)
    for name in newcomers:
        if over <= 0:
            break
        over -= out[name]
        out[name] = 0
    for name in sorted(out, key=lambda n: by_name[n].gpus - out[n]):
        if over <= 0:
            break
        back = min(over, max(0, out[name] - max(by_name[name].gpus, 1)))
        out[name] -= back
        over -= back
    return out


def hpcsched_policy(
    explore: bool = True, oracle: bool = False, allocator: AllocatorPolicy = HPCSCHED, prior: ThroughputPrior = DEFAULT_PRIOR
) -> ElasticPolicy:
    """hpcsched's allocator; ``oracle``: told the truth (``hpcsched-oracle``, no growth cap);
    ``allocator`` and ``prior``: other knobs than the defaults (benchmarks/tune_allocator.py)."""
    name = "hpcsched-oracle" if oracle else "hpcsched"
    return ElasticPolicy(name, allocator, explore and not oracle, on_arrival=True, oracle=oracle, before_break=True, prior=prior)


def hpcsched_nostop_policy() -> ElasticPolicy:
    """hpcsched as the daemon acts: it never stops a running job (module docstring)."""
    return ElasticPolicy("hpcsched-nostop", HPCSCHED, True, on_arrival=True, before_break=True, stops=False)


def pollux_policy(explore: bool = True, oracle: bool = False) -> ElasticPolicy:
    """The Pollux-like preset of the allocator; ``oracle`` as for :func:`hpcsched_policy`."""
    name = "pollux-oracle" if oracle else "pollux"
    return ElasticPolicy(name, POLLUX, explore and not oracle, oracle=oracle, prior=POLLUX_PRIOR)
