"""One decision pass of the coordinator (pure): Slurm's view of the cluster and the agents'
reports in, a size decision for every reported elastic job out.

Per partition (one after the other; partitions that share nodes see each other's waiting jobs
and never both count the same idle node: :mod:`.citizen`), the good-citizen rules say how many
nodes the elastic jobs may hold; the allocator (:func:`hpcsched.allocator.allocate`, with
fairness between users: each job's ``user``) shares that capacity out among the partition's elastic jobs, running and
waiting. A running job's current size is Slurm's (``squeue``), never the report's, since its
agent may be down. Grows go only into nodes nobody waits for (:mod:`.citizen`); a job with a
resize still under way (``busy``) keeps its size and its nodes, counted at the larger of its size
and the size its resize goes to, and no other job of its partition grows until that resize is done
(a second grow decided on the same idle nodes could never start, and its job would count as busy,
never shrunk, while its allocation waited in the queue). A running job not measured yet
keeps its size too (the prior says nothing of how it scales), unless the rules need its nodes for
someone waiting: then it shrinks as far as that needs; one measured at a single node count may
grow, but gives up no more nodes than others need.

Between users of hpcsched, fairness needs the newcomer seen before anyone grows: no job grows
while another elastic job of the partition waits for nodes, runs unmeasured, or (for a grace
period after it was submitted or started) carries hpcsched's tag without being reported yet; the
allocator would otherwise share the newcomer's nodes among the others. A waiting elastic job is
started at its fair size: when the allocator's target differs from the size it asked Slurm for,
the pending job's size is changed to the target (``requested``, :attr:`SizeDecision.sizes_pending`).
A grow's successor allocation (matched by owner and tag, reported or not yet) is the same job's:
it never counts as somebody waiting for nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcsched.allocator import HPCSCHED, AllocatorPolicy, Cluster, Decision, ElasticJob, allocate
from hpcsched.daemon.rebalance_plan import queue_wait_estimate
from hpcsched.jobs.model import JobState
from hpcsched.planning.plan import parse_tag
from hpcsched.slurm.parse import SlurmJobRecord

from .citizen import Partition, Room, fit_grows, jobs_in, room, waits_for_nodes
from .shares import weight_of

# A job carrying hpcsched's tag that its agent has not reported yet holds grows back this long
# after it was submitted or started (agents report every pass; a user who runs hpcsched without
# the coordinator must not hold everyone's grows for ever).
UNREPORTED_GRACE_S = 180.0


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
    requested: int = 0  # a waiting job: the node count it asks Slurm for now

    @property
    def executes(self) -> bool:
        return self.action in ("shrink", "grow")

    @property
    def sizes_pending(self) -> bool:
        """A waiting job to be started at another size than it asked for (``scontrol update
        NumNodes`` on the pending job, before Slurm starts it)."""
        return self.action == "start" and 0 < self.target != self.requested

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SitePlan:
    decisions: tuple[SizeDecision, ...]
    rooms: tuple[Room, ...]


def decide(partitions: Mapping[str, Partition], queue: Sequence[SlurmJobRecord], reports: Mapping[int, Reported],
           busy: Mapping[int, int] | None = None, policy: AllocatorPolicy = HPCSCHED, now: float | None = None,
           weights: Mapping[str, float] | None = None) -> SitePlan:
    """Every partition that holds a reported job, decided on its own (module docstring). ``busy``:
    the jobs with a resize under way, each with the node count that resize goes to. ``now``
    (the poll's time) lets a tagged job not reported yet hold grows back; None: it does not.
    ``weights``: each user's fair-share weight (:mod:`.shares`); None or empty: all equal."""
    records = {r.job_id: r for r in queue}
    live = {sid: rep for sid, rep in reports.items()
            if sid in records and records[sid].state in (JobState.RUNNING, JobState.PENDING)}
    decisions: list[SizeDecision] = []
    rooms: list[Room] = []
    served: set[int] = set()  # waiting jobs a partition decided before makes room for
    grown: list[tuple[Partition, int]] = []  # partitions decided before, and the nodes they grow by
    for name in sorted({records[sid].partition for sid in live}):
        partition = partitions.get(name)
        mine = {sid: rep for sid, rep in live.items() if records[sid].partition == name}
        if partition is None:
            decisions += [_fixed(rep, records[sid], name, "keep", "Slurm lists no nodes for its partition")
                          for sid, rep in mine.items()]
            continue
        nodes = set(partition.nodes)
        claimed = sum(min(grows, len(set(before.idle) & nodes)) for before, grows in grown)
        view = [r for r in queue if r.job_id not in served]
        plan, rm = _partition(partition, view, records, mine, busy or {}, policy, now, weights or {}, partitions, claimed)
        decisions += plan
        rooms.append(rm)
        served.update(rm.served)
        grown.append((partition, sum(max(0, d.target - d.current) for d in plan if d.action in ("grow", "start"))))
    return SitePlan(tuple(decisions), tuple(rooms))


def _partition(partition: Partition, queue: Sequence[SlurmJobRecord], records: Mapping[int, SlurmJobRecord],
               mine: Mapping[int, Reported], busy: Mapping[int, int], policy: AllocatorPolicy,
               now: float | None, weights: Mapping[str, float], partitions: Mapping[str, Partition],
               claimed: int) -> tuple[list[SizeDecision], Room]:
    def current(sid: int) -> int:
        return records[sid].node_count if records[sid].state is JobState.RUNNING else 0

    here = jobs_in(partition, queue)
    successors = _successors(here, mine)
    elastic = {sid: (rep.view.min_gpus, current(sid)) for sid, rep in mine.items()}
    elastic.update({other: (0, 0) for other in successors})  # a grow's new allocation is the same job's
    rm = room(partition, queue, elastic, partitions, claimed)
    pinned = {sid: max(current(sid), busy[sid]) for sid in mine if sid in busy}
    unmeasured = {sid for sid, rep in mine.items() if not rep.measured and current(sid) and sid not in pinned}
    hold = _grows_held(here, mine, successors, unmeasured, now, pinned)
    wait = queue_wait_estimate(rm.idle, rm.waiting)
    views = [_view(rep, sid, current(sid), wait, weight_of(weights, rep.user))
             for sid, rep in mine.items() if sid not in pinned.keys() | unmeasured]
    capacity = rm.capacity - sum(pinned.values())
    out = [_fixed(mine[sid], records[sid], partition.name, "busy", "a resize of this job is still under way")
           for sid in sorted(pinned)]
    held, capacity = _hold_unmeasured({sid: mine[sid] for sid in unmeasured}, current, capacity, rm, partition.name)
    out += held
    if not views:
        return out, rm
    allocation = allocate(Cluster(num_nodes=max(0, capacity), gpus_per_node=1), views, policy)
    targets = _whole_grows(_keep_unproven(allocation.decisions, mine, capacity), current, rm)
    for d in allocation.decisions:
        sid = int(d.key)
        rep = mine[sid]
        action, target, reason = _action(d.current_gpus, targets[sid], rep.view.min_gpus, rm, d.reason, hold)
        requested = records[sid].node_count if records[sid].state is JobState.PENDING else 0
        out.append(SizeDecision(sid, rep.uid, rep.user, partition.name, action, d.current_gpus, target, reason,
                                d.gain_s if action != "keep" else 0.0, d.cost_s if action != "keep" else 0.0,
                                requested))
    return out, rm


def _successors(here: Sequence[SlurmJobRecord], mine: Mapping[int, Reported]) -> set[int]:
    """Live Slurm jobs that are new allocations of a reported job (:func:`successors_of`)."""
    return {other for rep in mine.values() for other in successors_of(rep, here, mine.keys())}


def successors_of(rep: Reported, queue: Sequence[SlurmJobRecord], reported: Collection[int]) -> set[int]:
    """Live Slurm jobs that are new allocations of ``rep``'s job: those its report names, and those
    Slurm shows with its tag (store and job number) under the same owner, unless ``reported``
    (reported jobs are their own)."""
    out = set(rep.related)
    for r in queue:
        tag = parse_tag(r.comment)
        if tag is not None and r.job_id not in reported and not r.state.is_final and (r.uid, *tag) == (
                rep.uid, rep.store, rep.job_id):
            out.add(r.job_id)
    return out


def _grows_held(here: Sequence[SlurmJobRecord], mine: Mapping[int, Reported], successors: set[int],
                unmeasured: set[int], now: float | None, pinned: Mapping[int, int]) -> str:
    """Why no job of the partition may grow now ("" when they may): an elastic job whose share the
    allocator cannot judge yet, or a resize under way (module docstring)."""
    if pinned:
        return f"the resize of Slurm job {min(pinned)} is still under way"
    for r in sorted(here, key=lambda r: r.job_id):
        if r.job_id in mine and waits_for_nodes(r):
            return f"Slurm job {r.job_id} of hpcsched waits to start"
        if r.job_id in unmeasured:
            return f"Slurm job {r.job_id} of hpcsched runs and is not measured yet"
        if (now is not None and r.job_id not in mine and r.job_id not in successors and parse_tag(r.comment)
                and (r.state is JobState.RUNNING or waits_for_nodes(r))
                and now - max(r.submit_time or 0.0, r.start_time or 0.0) < UNREPORTED_GRACE_S):
            return f"Slurm job {r.job_id} of hpcsched is not reported yet"
    return ""


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


def _whole_grows(targets: dict[int, int], current: Callable[[int], int], rm: Room) -> dict[int, int]:
    """While a job is blocked, grows cut to what fits whole in the spare idle nodes
    (:func:`.citizen.fit_grows`): a grow that cannot start would only sit in the queue, and its
    job count as busy (never shrunk) while it does."""
    if rm.blocked is None:
        return targets
    free = max(0, rm.idle - rm.reserved - rm.kept) - sum(t for sid, t in targets.items() if not current(sid))
    grows = [(sid, current(sid), want) for sid, want in sorted(targets.items()) if current(sid) and want > current(sid)]
    return {**targets, **fit_grows(grows, free)}


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


def _action(current: int, target: int, minimum: int, rm: Room, why: str, hold: str = "") -> tuple[str, int, str]:
    if current == 0:
        return ("start", target, why) if target else ("wait", 0, why)
    if target == 0:  # the allocator would stop it; a running job is never stopped, only shrunk
        target, why = minimum, f"never stopped, at most shrunk to its minimum (the allocator: {why})"
    if target < current:
        return "shrink", target, _room_reason(rm, why)
    if target > current and hold:
        return "keep", current, f"no grow until its share is known: {hold}"
    if target > current:
        return "grow", target, why
    if rm.kept:
        why = f"{rm.kept} idle node(s) kept for Slurm job {rm.blocked}, which waits for nodes in partition {rm.partition}; {why}"
    return "keep", current, why


def _view(rep: Reported, sid: int, current: int, queue_wait_s: float, weight: float) -> ElasticJob:
    """The report's view at Slurm's size (a range that does not hold that size is widened to it),
    a grow priced make-before-break (the agent grows that way) with the partition's expected queue
    wait, the user's fair-share weight (Slurm's, never the report's)."""
    low = min(rep.view.min_gpus, current) if current else rep.view.min_gpus
    restart = dataclasses.replace(rep.view.restart, queue_wait_s=queue_wait_s, grow_before_break=True)
    return dataclasses.replace(rep.view, key=str(sid), current_gpus=current, user=rep.user, weight=weight,
                               min_gpus=low, max_gpus=max(rep.view.max_gpus, current), restart=restart)


def _fixed(rep: Reported, record: SlurmJobRecord, partition: str, action: str, why: str) -> SizeDecision:
    size = record.node_count if record.state is JobState.RUNNING else 0
    return SizeDecision(rep.slurm_job_id, rep.uid, rep.user, partition, action, size, size, why)
