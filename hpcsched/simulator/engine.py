"""The simulation loop: every ``interval`` simulated seconds (60, as in Pollux) the policy decides
sizes for the jobs that have arrived, changes are applied with their restart pauses, and every job
is advanced to the next decision. Simulated time only; the seeded random stream (restart waits)
is the only randomness, so a seed fixes the result.

Every policy gets the same decision timing: rounds only by default (as in Pollux's simulator),
or, with ``on_arrival``, also between rounds, as Slurm's scheduler acts on every submission and
every job end (and hpcsched's daemon with it):

* when a job arrives, a job that fits in the idle GPUs starts then, and hpcsched's daemon runs
  its admission pass for a job that waits for nodes (:mod:`hpcsched.daemon.rebalance`): the
  policy decides as in a round, and if that admits a waiting job, the shrinks that make room for
  it apply (never a grow) and the admitted jobs start on what is idle;
* when a job finishes while others wait, the policy decides again and the waiting jobs it admits
  start on the GPUs that freed up (no shrink, no grow: a pending Slurm job simply starts).

A rigid job (site mode, :mod:`.policies.site`) starts at its whole size or waits. Plain Slurm
never shrinks a job. A policy's ``decides_on_arrival`` says what its real counterpart does; the
simulation does not follow it, so that no policy wins by its timing.

Policies never see the truth: each decision and each batch choice is handed the jobs' views
(:func:`.knowledge.observe`; the truth only for a policy with ``oracle = True``). A job reports
its step time and gradient noise whenever it trains at a configuration, and an adaptive job
re-tunes its batch with what it then knows (:func:`_retune`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from hpcsched.allocator import Cluster
from hpcsched.models import DEFAULT_PRIOR

from .applications import Application
from .jobs import JobView, ReplayJob
from .knowledge import EXACT, Information, observe
from .metrics import SimulationResult, summarise
from .policies import Policy, make_policy
from .restarts import RestartModel
from .work import fixed_duration_work
from .workload import JobSpec

Progress = Callable[[float, int, int], None]
MAX_SIMULATED_S = 60 * 86400.0
END_SLACK_S = 1e-6


def _jobs(workload: Sequence[JobSpec], applications: Mapping[str, Application], gpus_per_node: int) -> list[ReplayJob]:
    jobs = []
    for spec in workload:
        if spec.application not in applications:
            raise ValueError(f"job {spec.name}: unknown application {spec.application!r}")
        app = applications[spec.application]
        traced = spec.duration_s is not None  # a Philly job: its work comes from a run time nobody declared
        total = fixed_duration_work(app, spec, gpus_per_node) if traced else app.total_work
        declared = None if traced else app.declared_work
        jobs.append(
            ReplayJob(
                spec=spec,
                app=app,
                total_work=total,
                gpus_per_node=gpus_per_node,
                declared_work=declared,
                state_since=spec.submit_time,
            )
        )
    return jobs


def _view(job: ReplayJob, policy: Policy) -> JobView:
    """What ``policy`` may know of ``job``: the truth only for a policy that asks for the oracle."""
    return observe(job, oracle=bool(getattr(policy, "oracle", False)), prior=getattr(policy, "prior", DEFAULT_PRIOR))


def _views(jobs: Sequence[ReplayJob], policy: Policy) -> list[JobView]:
    return [_view(job, policy) for job in jobs]


def _reallocate(
    job: ReplayJob, target: int, now: float, policy: Policy, restart: RestartModel, rng: np.random.Generator, load: float
) -> None:
    """Give ``job`` its new size: draw its pause (for a make-before-break grow, first the wait it
    trains through at its old size), count a restart if it had run before, and pick its batch
    configuration for the new size. A grow still waiting in the queue is abandoned first."""
    if job.overlap_left > 0 and target != job.gpus:
        job.gpus, job.config, job.overlap_left, job.pause_left = job.overlap_gpus, job.overlap_config, 0.0, 0.0
        job.size_since = now
        job.history.append((now, job.gpus))
    if target == job.gpus:
        return
    if (job.gpus == 0) != (target == 0):
        job.state_since = now
    if target and job.starts:
        job.restarts += 1
    job.starts += 1 if target else 0
    before_break = bool(getattr(policy, "grows_before_break", False))
    job.overlap_left, job.pause_left = restart.draw_change(rng, job.gpus, target, load, before_break)
    job.overlap_gpus, job.overlap_config = job.gpus, job.config
    if job.starts == 1 and target:
        job.first_pause = job.pause_left
    job.size_since = now
    job.gpus = target
    job.largest = max(job.largest, target)
    job.config = policy.config(_view(job, policy), target) if target else None
    job.history.append((now, target))


def _start_waiting(
    jobs: Sequence[ReplayJob],
    now: float,
    policy: Policy,
    cluster: Cluster,
    restart: RestartModel,
    rng: np.random.Generator,
    shrink: bool = True,
) -> None:
    """Between rounds: what hpcsched's admission pass and Slurm do. When ``shrink`` (a job
    arrived), the shrinks the policy makes room with apply first (:meth:`Policy.admit`: for
    hpcsched :func:`hpcsched.allocator.admission`, only if they pay; never a grow); then each
    waiting job the decision admits starts on what is idle, up to the size it was given."""
    views = _views(jobs, policy)
    targets, room = policy.admit(now, views, cluster, restart) if shrink else (policy.decide(now, views, cluster, restart), {})
    load = len(jobs) / max(cluster.capacity, 1)
    idle = cluster.capacity - sum(job.gpus for job in jobs)
    by_name = {job.name: job for job in jobs}
    for name, size in room.items():
        idle += by_name[name].gpus - size
        _reallocate(by_name[name], size, now, policy, restart, rng, load)
    for job in jobs:
        want = targets.get(job.name, 0)
        size = min(want, idle)
        if job.gpus == 0 and size > 0 and (size == want or not job.spec.rigid):  # a rigid job starts whole
            _reallocate(job, size, now, policy, restart, rng, load)
            idle -= size


def _between_rounds(
    jobs: Sequence[ReplayJob],
    active: Sequence[ReplayJob],
    now: float,
    end: float,
    policy: Policy,
    cluster: Cluster,
    restart: RestartModel,
    rng: np.random.Generator,
) -> None:
    """Advance from ``now`` to ``end`` event by event (module docstring): each arrival gets an
    admission pass; each job end while jobs wait lets the waiting ones start."""
    arriving = sorted(
        (job for job in jobs if now < job.spec.submit_time < end), key=lambda job: (job.spec.submit_time, job.name)
    )
    running = list(active)
    while True:
        arrival = arriving[0].spec.submit_time if arriving else end
        waiting = any(job.gpus == 0 for job in running)
        departure = _first_end(running, now, arrival - now, policy) if waiting else None
        stop = departure + END_SLACK_S if departure is not None else arrival
        _run(running, now, stop - now, policy)
        now, running = stop, [job for job in running if not job.done]
        if departure is not None:
            _start_waiting(running, now, policy, cluster, restart, rng, shrink=False)
        elif arriving:
            running.append(arriving.pop(0))
            _start_waiting(running, now, policy, cluster, restart, rng)
        else:
            return


def _first_end(jobs: Sequence[ReplayJob], now: float, seconds: float, policy: Policy) -> float | None:
    """When the first of ``jobs`` finishes, if it is more than :data:`END_SLACK_S` before
    ``now + seconds`` (None: none does); the jobs themselves are not advanced (each is probed on a
    copy). Running to the end plus the slack is sure to finish the job despite rounding."""
    ends = []
    for job in jobs:
        if job.gpus:
            probe = job.probe()
            _advance(probe, now, seconds, policy)
            if probe.completion is not None and probe.completion + END_SLACK_S < now + seconds:
                ends.append(probe.completion)
    return min(ends, default=None)


def _run(jobs: Sequence[ReplayJob], now: float, seconds: float, policy: Policy) -> None:
    """Advance every job by ``seconds`` and count who shared the cluster meanwhile (fairness)."""
    for job in jobs:
        job.contention += len(jobs) * seconds
        job.present_s += seconds
        _advance(job, now, seconds, policy)


def _retune(job: ReplayJob, policy: Policy) -> None:
    """The job trains: it reports at its configuration, and takes the batch configuration the
    policy's rule picks from what it now knows (an adaptive job re-tunes; a fixed one keeps its
    own), reporting there too if that is another."""
    job.report()
    chosen = policy.config(_view(job, policy), job.gpus)
    if chosen != job.config:
        job.config = chosen
        job.report()


def _advance(job: ReplayJob, now: float, seconds: float, policy: Policy) -> None:
    """Run ``job`` for ``seconds`` from ``now``: first what is left of a make-before-break grow's
    wait (training at the old size while holding the new), then its pause, then training."""
    if job.gpus == 0 or job.done:
        return
    if job.overlap_left > 0:
        span = min(job.overlap_left, seconds)
        job.overlap_left -= span
        held, chosen = job.gpus, job.config
        job.gpus, job.config = job.overlap_gpus, job.overlap_config
        trained = _train(job, now, span, policy)
        job.overlap_config, job.gpus, job.config = job.config, held, chosen
        waiting = trained * (held - job.overlap_gpus)  # the new allocation's extra GPUs, held unused
        job.allocated_gpu_s += waiting
        job.restart_gpu_s += waiting
        if job.done:
            return
        now, seconds = now + span, seconds - span
    used = min(job.pause_left, seconds)
    job.pause_left -= used
    if job.restarts:
        job.restart_gpu_s += used * job.gpus
    job.allocated_gpu_s += used * job.gpus
    job.executed_s += used
    _train(job, now + used, seconds - used, policy)


def _train(job: ReplayJob, now: float, seconds: float, policy: Policy) -> float:
    """Train ``job`` for up to ``seconds`` from ``now`` at its size, epoch by epoch; the seconds
    used (fewer if it finishes)."""
    used = 0.0
    last = job.last_epoch
    while used < seconds and not job.done:
        _retune(job, policy)
        rate = job.rate()
        end = job.epoch_end(job.epoch)
        need = (end - job.work_done) / rate
        if need > seconds - used:
            job.work_done += rate * (seconds - used)
            used = seconds
            break
        job.work_done, used = end, used + need
        if job.epoch == last:
            job.completion = now + used
        else:
            job.epoch += 1
    job.allocated_gpu_s += used * job.gpus
    job.executed_s += used
    return used


def simulate(
    workload: Sequence[JobSpec],
    policy: str | Policy,
    cluster: Cluster,
    restart_cost: RestartModel,
    seed: int = 0,
    applications: Mapping[str, Application] | None = None,
    interval: float = 60.0,
    progress: Progress | None = None,
    information: Information = EXACT,
    on_arrival: bool = False,
) -> SimulationResult:
    """Replay ``workload`` under ``policy`` on ``cluster``; deterministic for a ``seed``.
    ``information``: how the jobs' declarations differ from what they do; ``on_arrival``: every
    policy also decides between rounds (module docstring), else in rounds only."""
    if applications is None:
        from .data import default_applications

        applications = default_applications()
    chosen = make_policy(policy) if isinstance(policy, str) else policy
    jobs = _jobs(workload, applications, cluster.gpus_per_node)
    information.apply(jobs, seed)
    rng = np.random.default_rng(seed)
    capacity = max(cluster.capacity, 1)
    now, usage = 0.0, []
    while not all(job.done for job in jobs):
        if now > MAX_SIMULATED_S:
            raise RuntimeError(f"simulation of {chosen.name} did not finish within {MAX_SIMULATED_S / 86400:.0f} days")
        active = [job for job in jobs if job.spec.submit_time <= now and not job.done]
        if not active:
            upcoming = min(job.spec.submit_time for job in jobs if not job.done)
            # Rounds only: jump to the first round after the arrival; else to the round before it.
            now = (math.ceil if not on_arrival else math.floor)(upcoming / interval) * interval
            if not on_arrival or now == upcoming:
                continue
        else:
            load = len(active) / capacity
            targets = chosen.decide(now, _views(active, chosen), cluster, restart_cost)
            for job in active:
                _reallocate(job, targets.get(job.name, 0), now, chosen, restart_cost, rng, load)
            usage.append((now, sum(job.gpus for job in active)))
        if on_arrival:
            _between_rounds(jobs, active, now, now + interval, chosen, cluster, restart_cost, rng)
        else:
            _run(active, now, interval, chosen)
        now += interval
        if progress is not None:
            progress(now, sum(job.done for job in jobs), len(jobs))
    return summarise(chosen.name, restart_cost.label, jobs, usage, cluster, lambda job: chosen.max_gpus(_view(job, chosen)))
