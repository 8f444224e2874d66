"""Turning hpcsched's jobs and Slurm's node states into the allocator's inputs (pure).

The real cluster is allocated in whole nodes: one allocator "GPU" is one node, and a job's
replicas are its nodes. Each job's throughput model is fitted to the step times its attempts
reported at the sizes it ran at; until the runtime measures gradient noise, efficiency is taken
as flat (a large noise scale), so goodput is throughput.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hpcsched.allocator import Cluster, ElasticJob, GoodputModel, RestartCost
from hpcsched.jobs.model import Job
from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.throughput import Observation
from hpcsched.models.throughput_fit import fit
from hpcsched.planning.fields import parse_nodes

FLAT_NOISE = GradientNoise(grad_sqr=1.0, grad_var=1e9)
CHECKPOINT_S = 5.0  # measured: benchmarks/results/resize_cycle.md (save + stop)
START_S = 6.0  # container start + rendezvous + checkpoint load on the local cluster
BUSY_QUEUE_WAIT_S = 600.0


def observations(job: Job, records: Sequence[Mapping[str, Any]]) -> list[Observation]:
    """Mean step time per attempt (and so per size) from the job's progress lines."""
    nodes = {a.number: a.nodes for a in job.attempts}
    out = []
    for number in sorted({int(r.get("attempt") or 0) for r in records}):
        times = [float(r["step_time"]) for r in records
                 if r.get("attempt") == number and r.get("event") == "step" and r.get("step_time")]
        batch = next((int(r["global_batch"]) for r in records if r.get("attempt") == number and r.get("global_batch")), 0)
        n = nodes.get(number, 0)
        if times and batch and n:
            out.append(Observation(num_nodes=n, num_replicas=n, local_bsz=max(1, batch // n), accum_steps=0,
                                   step_time=sum(times) / len(times)))
    return out


def elastic_job(job: Job, records: Sequence[Mapping[str, Any]], now: float, queue_wait_s: float) -> ElasticJob | None:
    """The allocator's view of one running elastic job, or None without enough measurements."""
    obs = observations(job, records)
    progress = job.progress or {}
    cur = job.current
    if not obs or cur is None or not progress.get("global_batch"):
        return None
    allowed = parse_nodes(str(job.request.get("nodes", "1")))
    batch = int(progress["global_batch"])
    total, step = progress.get("total_steps"), int(progress.get("step") or 0)
    remaining = float(max(0, int(total) - step) * batch) if total else math.inf
    started = min((a.start_time for a in job.attempts if a.start_time), default=now)
    at_size = now - (cur.start_time or now)
    return ElasticJob(
        key=str(job.id),
        model=GoodputModel(fit(obs), FLAT_NOISE, BatchLimits(min_global_bsz=batch, max_global_bsz=batch,
                                                              max_local_bsz=batch)),
        min_gpus=allowed.min, max_gpus=allowed.max, current_gpus=cur.nodes, remaining_work=remaining,
        age_s=max(0.0, now - job.created), time_in_state_s=max(0.0, now - started), time_at_size_s=max(0.0, at_size),
        restarts=len(job.attempts) - 1,
        restart=RestartCost(checkpoint_s=CHECKPOINT_S, start_s=START_S, queue_wait_s=queue_wait_s),
        account=str(job.request.get("account") or ""),
    )


def cluster_view(node_states: Mapping[str, str], ours: Iterable[str]) -> tuple[Cluster, list[str]]:
    """Nodes (sorted), down/drained ones unavailable, nodes busy with other jobs occupied."""
    names = sorted(node_states)
    mine = set(ours)
    unavailable = {i for i, n in enumerate(names) if node_states[n].rstrip("*~#!%$@^-") in
                   ("down", "drain", "drng", "drained", "draining", "fail", "maint", "resv", "boot")}
    foreign = {i: 1 for i, n in enumerate(names) if i not in unavailable and n not in mine
               and node_states[n].rstrip("*~#!%$@^-") in ("alloc", "mix", "comp", "completing")}
    return Cluster(num_nodes=len(names), gpus_per_node=1, unavailable_nodes=frozenset(unavailable),
                   foreign_gpus=foreign), names


def queue_wait_estimate(idle_nodes: int, pending_jobs: int) -> float:
    """Expected wait of a grown allocation: none while nodes are idle, long when others queue."""
    if idle_nodes > 0 and pending_jobs == 0:
        return 0.0
    return BUSY_QUEUE_WAIT_S * (1 + pending_jobs) if idle_nodes == 0 else BUSY_QUEUE_WAIT_S / 2
