"""One decision pass of the coordinator (pure): Slurm's view of the cluster and the agents'
reports in, a size decision for every reported elastic job out.

Per partition, the good-citizen rules (:mod:`.citizen`) say how many nodes the elastic jobs may
hold; the allocator (:func:`hpcsched.allocator.allocate`, with fairness between users: each
job's ``user``) shares that capacity out among the partition's elastic jobs, running and
waiting. A running job's current size is Slurm's (``squeue``), never the report's, since its
agent may be down. Grows are dropped while someone waits for nodes in the partition; a job with a
resize still under way (``busy``) keeps its size and its nodes. A running job not measured yet
keeps its size too (the prior says nothing of how it scales), unless the rules need its nodes for
someone waiting: then it shrinks as far as that needs; one measured at a single node count may
grow, but gives up no more nodes than others need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcsched.allocator import HPCSCHED, AllocatorPolicy, Cluster, Decision, ElasticJob, allocate
from hpcsched.daemon.rebalance_plan import queue_wait_estimate
from hpcsched.jobs.model import JobState
from hpcsched.slurm.parse import SlurmJobRecord

from .citizen import Partition, Room, room


@dataclass(frozen=True)
class Reported:
    """What an agent last said about one elastic job, checked (:mod:`.service`)."""

    slurm_job_id: int
    uid: int
    user: str
    job_id: int  # the agent's own job number, for the user's eyes
    name: str
    view: ElasticJob
    related: tuple[int, ...] = ()  # other live Slurm jobs of the same job (a grown successor)
    received: float = 0.0
    measured: bool = True  # False: a running job with no step time yet, described by the prior
    store: str = ""  # the reporting daemon's store (a user may have one per login node)
    sizes_seen: int = 2  # node counts the job has step times at; with one, how it scales is a guess


@dataclass(frozen=True)
class SizeDecision:
    slurm_job_id: int
    uid: int
    user: str
    partition: str
    action: str  # shrink | grow | keep | start | wait | busy
    current: int
    target: int
    reason: str
    gain_s: float = 0.0
    cost_s: float = 0.0

    @property
    def executes(self) -> bool:
        return self.action in ("shrink", "grow")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SitePlan:
    decisions: tuple[SizeDecision, ...]
    rooms: tuple[Room, ...]


def decide(partitions: Mapping[str, Partition], queue: Sequence[SlurmJobRecord], reports: Mapping[int, Reported],
           busy: frozenset[int] = frozenset(), policy: AllocatorPolicy = HPCSCHED) -> SitePlan:
    """Every partition that holds a reported job, decided on its own (module docstring)."""
    records = {r.job_id: r for r in queue}
    live = {sid: rep for sid, rep in reports.items()
            if sid in records and records[sid].state in (JobState.RUNNING, JobState.PENDING)}
    decisions: list[SizeDecision] = []
    rooms: list[Room] = []
    for name in sorted({records[sid].partition for sid in live}):
        partition = partitions.get(name)
        mine = {sid: rep for sid, rep in live.items() if records[sid].partition == name}
        if partition is None:
            decisions += [_fixed(rep, records[sid], name, "keep", "Slurm lists no nodes for its partition")
                          for sid, rep in mine.items()]
            continue
        plan, rm = _partition(partition, queue, records, mine, busy, policy)
        decisions += plan
        rooms.append(rm)
    return SitePlan(tuple(decisions), tuple(rooms))


def _partition(partition: Partition, queue: Sequence[SlurmJobRecord], records: Mapping[int, SlurmJobRecord],
               mine: Mapping[int, Reported], busy: frozenset[int], policy: AllocatorPolicy) -> tuple[list[SizeDecision], Room]:
    def current(sid: int) -> int:
        return records[sid].node_count if records[sid].state is JobState.RUNNING else 0

    elastic = {sid: (rep.view.min_gpus, current(sid)) for sid, rep in mine.items()}
    elastic.update({other: (0, 0) for rep in mine.values() for other in rep.related})  # successors are ours too
    rm = room(partition, queue, elastic)
    pinned = {sid for sid in mine if sid in busy}
    unmeasured = {sid for sid, rep in mine.items() if not rep.measured and current(sid) and sid not in pinned}
    wait = queue_wait_estimate(rm.idle, rm.waiting)
    views = [_view(rep, sid, current(sid), wait) for sid, rep in mine.items() if sid not in pinned | unmeasured]
    capacity = rm.capacity - sum(current(sid) for sid in pinned)
    out = [_fixed(mine[sid], records[sid], partition.name, "busy", "a resize of this job is still under way")
           for sid in sorted(pinned)]
    held, capacity = _hold_unmeasured({sid: mine[sid] for sid in unmeasured}, current, capacity, rm, partition.name)
    out += held
    if not views:
        return out, rm
    allocation = allocate(Cluster(num_nodes=max(0, capacity), gpus_per_node=1), views, policy)
    targets = _keep_unproven(allocation.decisions, mine, capacity)
    for d in allocation.decisions:
        sid = int(d.key)
        rep = mine[sid]
        action, target, reason = _action(d.current_gpus, targets[sid], rep.view.min_gpus, rm, d.reason)
        out.append(SizeDecision(sid, rep.uid, rep.user, partition.name, action, d.current_gpus, target, reason,
                                d.gain_s if action != "keep" else 0.0, d.cost_s if action != "keep" else 0.0))
    return out, rm


def _keep_unproven(decisions: Sequence[Decision], mine: Mapping[int, Reported], capacity: int) -> dict[int, int]:
    """Targets, except that a job measured at one size only gives up no more nodes than others
    need: a model fitted to one node count guesses how it scales, and a shrink nobody needs
    would leave its nodes idle."""
    targets = {int(d.key): d.target_gpus for d in decisions}
    slack = capacity - sum(targets.values())
    for d in decisions:
        sid = int(d.key)
        if mine[sid].sizes_seen < 2 and 0 < d.target_gpus < d.current_gpus and slack > 0:
            back = min(slack, d.current_gpus - d.target_gpus)
            targets[sid] += back
            slack -= back
    return targets


def _hold_unmeasured(jobs: Mapping[int, Reported], current: Callable[[int], int], capacity: int, rm: Room,
                     partition: str) -> tuple[list[SizeDecision], int]:
    """Running jobs with no measurement keep their size, except what the capacity cannot hold:
    that comes off the largest first, down to their minimum. Returns their decisions and the
    capacity left for the others."""
    sizes = {sid: current(sid) for sid in jobs}
    deficit = sum(sizes.values()) - capacity
    for sid in sorted(jobs, key=lambda s: sizes[s] - jobs[s].view.min_gpus, reverse=True):
        cut = min(max(0, deficit), sizes[sid] - min(jobs[sid].view.min_gpus, sizes[sid]))
        sizes[sid] -= cut
        deficit -= cut
    out = []
    for sid, rep in sorted(jobs.items()):
        now = current(sid)
        if sizes[sid] < now:
            out.append(SizeDecision(sid, rep.uid, rep.user, partition, "shrink", now, sizes[sid],
                                    _room_reason(rm, "not measured yet: shrinks only as far as others need")))
        else:
            out.append(SizeDecision(sid, rep.uid, rep.user, partition, "keep", now, now,
                                    "not measured yet: keeps its size until it reports step times"))
    return out, capacity - sum(sizes.values())


def _room_reason(rm: Room, why: str) -> str:
    if rm.reserved and rm.served:
        others = ", ".join(str(j) for j in rm.served)
        return f"makes room for Slurm job(s) {others} of other users waiting for {rm.reserved} node(s); {why}"
    return why


def _action(current: int, target: int, minimum: int, rm: Room, why: str) -> tuple[str, int, str]:
    if current == 0:
        return ("start", target, why) if target else ("wait", 0, why)
    if target == 0:  # the allocator would stop it; a running job is never stopped, only shrunk
        target = minimum
    if target < current:
        return "shrink", target, _room_reason(rm, why)
    if target > current and not rm.may_grow:
        return "keep", current, f"no grow: Slurm job {rm.blocked} waits for nodes in partition {rm.partition}"
    if target > current:
        return "grow", target, why
    return "keep", current, why


def _view(rep: Reported, sid: int, current: int, queue_wait_s: float) -> ElasticJob:
    """The report's view at Slurm's size (a range that does not hold that size is widened to it),
    a grow priced with the partition's expected queue wait."""
    low = min(rep.view.min_gpus, current) if current else rep.view.min_gpus
    restart = dataclasses.replace(rep.view.restart, queue_wait_s=queue_wait_s)
    return dataclasses.replace(rep.view, key=str(sid), current_gpus=current, user=rep.user,
                               min_gpus=low, max_gpus=max(rep.view.max_gpus, current), restart=restart)


def _fixed(rep: Reported, record: SlurmJobRecord, partition: str, action: str, why: str) -> SizeDecision:
    size = record.node_count if record.state is JobState.RUNNING else 0
    return SizeDecision(rep.slurm_job_id, rep.uid, rep.user, partition, action, size, size, why)
