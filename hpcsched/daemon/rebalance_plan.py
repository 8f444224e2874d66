"""Turning hpcsched's jobs and Slurm's node states into the allocator's inputs (pure).

The real cluster is allocated in whole nodes: one allocator "GPU" is one node, and a job's
replicas are its nodes (each node's ranks together form one replica with their summed local
batch). Each job's throughput model is fitted to the step times its attempts reported at the
configurations they ran with (:mod:`hpcsched.jobs.measured`, the same reading ``hpcsched model``
shows). A job that reports its gradient noise is sized with that noise and its own batch limits
(``base_batch`` to ``max_batch``); until it does, efficiency is taken as flat (a large noise
scale) and the batch is held at the current one, so goodput is throughput at that batch.

hpcsched's jobs that wait in Slurm's queue for their first nodes (or after a requeue) are
inputs too (:func:`waiting_job`), so a pass can shrink elastic jobs to make room for them. One
that has never run has no step times: its model is the fit's prior (any single step time gives
the same speedups), and its remaining work the undeclared prior, half an hour at its minimum.
No job is offered more than twice the nodes it has run on (:func:`growth_cap`, Pollux's rule,
as the simulator's policies have it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hpcsched.allocator import Cluster, ElasticJob, GoodputModel, RestartCost, estimate_remaining_work, undeclared_prior
from hpcsched.jobs.measured import Measurements, measure
from hpcsched.jobs.model import AttemptReason, Job, JobState
from hpcsched.models.efficiency import GradientNoise, statistical_efficiency
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.throughput import Observation
from hpcsched.models.throughput_fit import fit
from hpcsched.planning.fields import parse_nodes
from hpcsched.site.citizen import WAITS_FOR_NODES

FLAT_NOISE = GradientNoise(grad_sqr=1.0, grad_var=1e9)
CHECKPOINT_S = 5.0  # measured: benchmarks/results/resize_cycle.md (save + stop)
START_S = 6.0  # container start + rendezvous + checkpoint load on the local cluster
BUSY_QUEUE_WAIT_S = 600.0


def measurements(job: Job, records: Sequence[Mapping[str, Any]]) -> Measurements:
    """What the job measured, with each node as one replica; old lines take their node count
    from the attempt records."""
    return measure(records, {a.number: a.nodes for a in job.attempts}).per_node()


def observations(job: Job, records: Sequence[Mapping[str, Any]]) -> list[Observation]:
    """Mean step time per configuration (node count, batch split) from the job's progress lines."""
    return measurements(job, records).observations()


def goodput_model(measured: Measurements, max_nodes: int) -> GoodputModel | None:
    """The job's model for the allocator; None before any step time.

    A job that does not adapt its batch keeps its batch per node (the runtime keeps the batch per
    process) whatever its size, so its global batch is that times the node count. Without a noise
    estimate its efficiency is taken as flat: goodput is throughput at that batch per node.
    """
    if not measured.step_times or measured.current is None or measured.limits is None:
        return None
    params = fit(measured.observations())
    if measured.noise is not None and measured.adaptive:
        return GoodputModel(params, measured.noise, measured.limits)
    per_node = measured.current.local_bsz * (measured.current.accum_steps + 1)
    limits = BatchLimits(min_global_bsz=per_node, max_global_bsz=per_node * max(1, max_nodes), max_local_bsz=per_node)
    return GoodputModel(params, measured.noise or FLAT_NOISE, limits)


def remaining_work(model: GoodputModel, batch: int, progress: Mapping[str, Any], min_nodes: int) -> float:
    """Samples left, in samples at ``M0`` (goodput's unit), by the allocator's one estimate
    (:func:`hpcsched.allocator.estimate_remaining_work`): the steps the script declared still to
    run at the current batch, each sample worth its statistical efficiency; when it declared
    nothing, as much again as it has done (at least half an hour on its minimum size); past the
    steps it declared, as much again as it has run past them (at least the same half hour)."""
    total, step = progress.get("total_steps"), int(progress.get("step") or 0)
    done = float(progress.get("samples") or step * batch)
    prior = undeclared_prior(model, min_nodes, 1)
    if not total:
        return estimate_remaining_work(done, None, prior=prior)
    if step > int(total):  # the declaration was wrong: the work past it is all that is known
        return estimate_remaining_work(done, max(done - (step - int(total)) * batch, 0.0), prior=prior)
    efficiency = float(statistical_efficiency(model.noise, batch, model.limits.min_global_bsz))
    return estimate_remaining_work(done, done + max(0, int(total) - step) * batch) * efficiency


def _view(job: Job, model: GoodputModel, measured: Measurements, now: float, current_gpus: int, since: float,
          at_size_s: float, restart: RestartCost) -> ElasticJob:
    """What the allocator takes for one job of ours: its node range, model and remaining work."""
    allowed = parse_nodes(str(job.request.get("nodes", "1")))
    batch = measured.current.global_bsz if measured.current is not None else model.limits.min_global_bsz
    return ElasticJob(
        key=str(job.id),
        model=model,
        min_gpus=allowed.min,
        max_gpus=growth_cap(job, allowed.min, allowed.max, current_gpus),
        current_gpus=current_gpus,
        remaining_work=remaining_work(model, batch, job.progress or {}, allowed.min),
        age_s=max(0.0, now - job.created),
        time_in_state_s=max(0.0, now - since),
        time_at_size_s=at_size_s,
        restarts=max(0, len(job.attempts) - 1),
        restart=restart,
        account=str(job.request.get("account") or ""),
        climbing=0 < largest_nodes(job) <= current_gpus,
        never_ran=current_gpus == 0 and largest_nodes(job) == 0,
    )  # fmt: skip


def largest_nodes(job: Job) -> int:
    """The most nodes any attempt of the job has started on (0 before it has run)."""
    return max((a.nodes for a in job.attempts if a.start_time), default=0)


def growth_cap(job: Job, least: int, most: int, current: int) -> int:
    """The most nodes a pass may give the job: twice the most it has run on, within its range
    (its minimum before it has run), as Pollux caps growth. Its model has seen no larger size,
    and the prior's guess about one is only a guess; a job grows on as it shows it scales."""
    return max(least, min(most, max(2 * largest_nodes(job), current)))


def elastic_job(job: Job, records: Sequence[Mapping[str, Any]], now: float, queue_wait_s: float) -> ElasticJob | None:
    """The allocator's view of one running elastic job, or None without enough measurements."""
    measured = measurements(job, records)
    model = goodput_model(measured, parse_nodes(str(job.request.get("nodes", "1"))).max)
    cur = job.current
    if model is None or measured.current is None or cur is None:
        return None
    started = min((a.start_time for a in job.attempts if a.start_time), default=now)
    # grows are make-before-break (daemon/resize.py): the queue wait only delays the speedup
    restart = RestartCost(checkpoint_s=CHECKPOINT_S, start_s=START_S, queue_wait_s=queue_wait_s, grow_before_break=True)
    return _view(job, model, measured, now, cur.nodes, started, max(0.0, now - (cur.start_time or now)), restart)


def waiting(job: Job) -> bool:
    """Whether ``job`` waits in Slurm's queue for nodes to start on (not a resize of a running job)."""
    cur = job.current
    return (
        cur is not None and cur.state is JobState.PENDING and cur.slurm_job_id is not None
        and cur.reason is not AttemptReason.RESIZE and not job.cancel_requested
        and cur.state_reason in WAITS_FOR_NODES
    )  # fmt: skip


def waiting_job(job: Job, records: Sequence[Mapping[str, Any]], now: float, queue_wait_s: float) -> ElasticJob:
    """The allocator's view of a job of ours waiting in the queue: no nodes, its node range. One
    that never ran gets the fit's prior with one sample per node (and so the undeclared remaining
    work)."""
    measured = measurements(job, records)
    max_nodes = parse_nodes(str(job.request.get("nodes", "1"))).max
    model = goodput_model(measured, max_nodes) or GoodputModel(
        fit([Observation(1, 1, 1, 0, step_time=1.0)]), FLAT_NOISE,
        BatchLimits(min_global_bsz=1, max_global_bsz=max_nodes, max_local_bsz=1),
    )  # fmt: skip
    cur = job.current
    queued = cur.submit_time if cur is not None and cur.submit_time else job.created
    restart = RestartCost(checkpoint_s=0.0, start_s=START_S, queue_wait_s=queue_wait_s)
    return _view(job, model, measured, now, 0, queued, math.inf, restart)


def cluster_view(node_states: Mapping[str, str], ours: Iterable[str]) -> tuple[Cluster, list[str]]:
    """Nodes (sorted), down/drained ones unavailable, nodes busy with other jobs occupied."""
    names = sorted(node_states)
    mine = set(ours)
    unavailable = {
        i
        for i, n in enumerate(names)
        if node_states[n].rstrip("*~#!%$@^-") in ("down", "drain", "drng", "drained", "draining", "fail", "maint", "resv", "boot")
    }
    foreign = {
        i: 1
        for i, n in enumerate(names)
        if i not in unavailable and n not in mine and node_states[n].rstrip("*~#!%$@^-") in ("alloc", "mix", "comp", "completing")
    }
    return Cluster(num_nodes=len(names), gpus_per_node=1, unavailable_nodes=frozenset(unavailable), foreign_gpus=foreign), names


def queue_wait_estimate(idle_nodes: int, pending_jobs: int) -> float:
    """Expected wait of a grown allocation: none while nodes are idle, long when others queue."""
    if idle_nodes > 0 and pending_jobs == 0:
        return 0.0
    return BUSY_QUEUE_WAIT_S * (1 + pending_jobs) if idle_nodes == 0 else BUSY_QUEUE_WAIT_S / 2


def measured_nodes(job: Job, records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The node counts the job has timed steps at: with one, the gain of any other size is the
    model's guess, not a measurement."""
    return sorted({m.config.num_nodes for m in measurements(job, records).step_times})


def in_nodes(reason: str) -> str:
    """The allocator's sentences count in GPUs; on the cluster each of its GPUs is one node."""
    return re.sub(r"\b1 nodes\b", "1 node", re.sub(r"\bGPU(s?)\b", lambda m: "node" + m.group(1), reason))

