"""The good-citizen rules of site mode (pure): what elastic jobs may hold in a partition.

hpcsched shares the cluster with people who have never heard of it, and it must never make them
wait longer. Per partition, from one ``squeue`` and one ``sinfo`` of the whole cluster:

1. A job that waits for nodes (Slurm's reason ``Resources`` or ``Priority``, or none yet: one
   submitted since Slurm's scheduler last ran; not a dependency, a hold, a limit or a begin time,
   which free nodes would not end) and is not an elastic job of hpcsched's is served in Slurm's
   order (priority, then submission): its nodes are *reserved*, first from the idle nodes, then
   from what elastic jobs hold above their minimum. Those elastic jobs shrink, Slurm starts the
   waiting job on the nodes they release.
2. The first waiting job that even shrinking every elastic job to its minimum would not start
   (other jobs hold too much) *blocks*: Slurm plans its start for when enough running jobs have
   ended (their time limits, elastic jobs' minimums included), so nothing is reserved for the
   jobs behind it, and no elastic job shrinks for it now (that would not start it sooner).
3. Elastic jobs grow only into nodes nobody waits for: never into reserved nodes, and while a job
   is blocked, only into the idle nodes its planned start leaves spare (what is free then beyond
   what it needs; the others are *kept* for it). That is what Slurm's backfill would let any job
   start on; when the blocked job can start, rule 1 shrinks the elastic jobs for it.

What is left (the partition's usable nodes minus other jobs' nodes minus the reservations) is the
elastic jobs' capacity, which the allocator shares out (:mod:`.decide`).

Partitions that share nodes: a job waiting in another partition that shares nodes with this one
(a ``short`` partition over the same nodes as ``gpu``, say) counts in the rules above as one of
this partition's, for the shared nodes only: it takes idle nodes of its own partition outside
this one first, and what it still needs is reserved here, from idle shared nodes and from what
this partition's elastic jobs hold on shared nodes above their minimum. If that cannot start it,
it blocks this partition's grows. An elastic job of hpcsched's waiting in another partition (a
first start, or a grow's new allocation) is that partition's to decide, not a reason to shrink
here. Partitions are decided one after the other, and idle nodes that the elastic jobs of one may
grow into are ``claimed`` from the next, so that two partitions never both count the same idle
node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hpcsched.jobs.model import JobState
from hpcsched.planning.plan import parse_tag
from hpcsched.slurm import hostlist
from hpcsched.slurm.parse import SlurmJobRecord

K = TypeVar("K")
# Slurm's reasons for a pending job that free nodes would start (not a dependency, a hold, a
# limit of the account or QOS, or a begin time).
WAITS_FOR_NODES = ("Resources", "Priority")
# Idle: free now. Slurm (22.05 on) shows as ``plnd`` (PLANNED) an idle node its backfill plan keeps
# for a waiting job; it is free, and rule 3 keeps it for that job as its planned start needs.
IDLE = ("idle", "plnd")
UNUSABLE = ("down", "drain", "drng", "drained", "draining", "fail", "maint", "resv", "boot", "futr", "unk")


def base_state(state: str) -> str:
    return state.rstrip("*~#!%$@^-")


@dataclass(frozen=True)
class Partition:
    """One partition as the coordinator sees it: its nodes (sorted) and their compact states."""

    name: str
    states: Mapping[str, str]

    @property
    def nodes(self) -> list[str]:
        return sorted(self.states)

    @property
    def usable(self) -> list[str]:
        return [n for n in self.nodes if base_state(self.states[n]) not in UNUSABLE]

    @property
    def idle(self) -> list[str]:
        return [n for n in self.nodes if base_state(self.states[n]) in IDLE]


def partitions(rows: Iterable[tuple[str, str, str]]) -> dict[str, Partition]:
    """``sinfo`` rows (node, partition, state) grouped by partition."""
    grouped: dict[str, dict[str, str]] = {}
    for node, partition, state in rows:
        grouped.setdefault(partition, {})[node] = state
    return {name: Partition(name, states) for name, states in grouped.items()}


@dataclass(frozen=True)
class Room:
    """What the rules leave the elastic jobs of one partition."""

    partition: str
    capacity: int  # nodes the elastic jobs may hold in all
    reserved: int  # nodes kept for waiting jobs of others (idle ones first)
    served: tuple[int, ...]  # waiting jobs of others that the reservation starts
    blocked: int | None  # the first waiting job that shrinking would not start
    foreign: frozenset[str]  # nodes other jobs hold
    idle: int = 0  # usable idle nodes
    waiting: int = 0  # jobs of anybody waiting for nodes here (elastic ones included)
    kept: int = 0  # idle nodes kept for the blocked job (rule 3)


def waits_for_nodes(record: SlurmJobRecord) -> bool:
    return record.state is JobState.PENDING and record.reason in WAITS_FOR_NODES


def may_take_free_nodes(record: SlurmJobRecord) -> bool:
    """A pending job that Slurm may start on nodes as they free up: it waits for nodes, or Slurm
    has not looked at it yet (no reason set: its scheduler has not run since the submission)."""
    return waits_for_nodes(record) or (record.state is JobState.PENDING and record.reason in ("", "None"))


def jobs_in(partition: Partition, queue: Sequence[SlurmJobRecord]) -> list[SlurmJobRecord]:
    """The jobs of ``queue`` that run or wait in ``partition`` (one of a job's comma list)."""
    return [r for r in queue if r.partition == partition.name or partition.name in r.partition.split(",")]


def room(partition: Partition, queue: Sequence[SlurmJobRecord], elastic: Mapping[int, tuple[int, int]],
         others: Mapping[str, Partition] | None = None, claimed: int = 0) -> Room:
    """The elastic jobs' room in ``partition``. ``elastic`` maps the Slurm id of every elastic
    job of hpcsched's (running or waiting, grown successors too) to (minimum, current) nodes.

    ``others``: every partition Slurm lists, so that a job waiting in a partition that shares
    nodes with this one counts too (module docstring, "Partitions that share nodes");
    ``claimed``: idle nodes of this partition that the decisions of a partition decided before
    may already grow into (shared nodes are not handed out twice)."""
    usable = set(partition.usable)
    mine = set(partition.nodes)
    in_partition = jobs_in(partition, queue)
    nodes_of = {r.job_id: set(hostlist.expand(r.node_list)) for r in in_partition
                if r.job_id in elastic and r.state is JobState.RUNNING}
    held_by_elastic: set[str] = set().union(*nodes_of.values())
    busy = {n for n in partition.nodes if base_state(partition.states[n]) not in IDLE}
    foreign = frozenset((busy & usable) - held_by_elastic)
    idle_nodes = set(partition.idle) & usable
    claimed = min(max(0, claimed), len(idle_nodes))
    spare = {job_id: max(0, current - low) for job_id, (low, current) in elastic.items() if job_id in nodes_of}
    neighbours = _neighbours(partition, others or {})
    outside_idle = {n for p in neighbours.values() for n in set(p.idle) & set(p.usable) if n not in mine}
    own = {r.job_id for r in in_partition}
    reaches = {r.job_id: _reach(r, neighbours) for r in queue if may_take_free_nodes(r) and r.job_id not in elastic
               and (r.job_id in own or parse_tag(r.comment) is None)}
    waiting = sorted((r for r in queue if reaches.get(r.job_id)),
                     key=lambda r: (-r.priority, r.submit_time or 0.0, r.job_id))
    reserved, served, blocked, kept = 0, [], None, 0
    for r in waiting:
        reach = reaches[r.job_id]
        elsewhere = sorted(outside_idle & reach)[: max(1, r.node_count)]  # idle nodes it may take outside
        need = max(1, r.node_count) - len(elsewhere)
        outside_idle -= set(elsewhere)
        if need <= 0:  # it starts outside this partition, on idle nodes of its own
            continue
        here = reach & mine
        whole = here == mine  # waits for this partition's nodes, all of them
        shrinkable = sum(spare[j] if whole else min(spare[j], len(nodes_of[j] & here)) for j in spare)
        have = len(idle_nodes & here) - claimed + shrinkable - reserved
        if need > have:
            blocked = r.job_id
            ends = _releases(queue, here & usable, elastic)
            idle_left = max(0, min(len(idle_nodes) - claimed - reserved, len(idle_nodes & here)))
            kept = max(0, idle_left - planned_start(need, have, ends)[1])
            break
        reserved += need
        served.append(r.job_id)
    capacity = max(0, len(usable) - len(foreign) - reserved - claimed - kept)
    queued = sum(1 for r in in_partition if waits_for_nodes(r))
    return Room(partition.name, capacity, reserved, tuple(served), blocked, foreign, len(idle_nodes) - claimed, queued,
                kept)


def _releases(jobs: Sequence[SlurmJobRecord], nodes: set[str],
              elastic: Mapping[int, tuple[int, int]]) -> list[tuple[float, int]]:
    """When running ``jobs`` give nodes of ``nodes`` back (at their time limit: Slurm's end time),
    and how many: all of them, or an elastic job its minimum (what it holds above is
    counted as shrinkable already). Sorted by time; a job with no end time never gives any back."""
    out = []
    for r in jobs:
        if r.state is not JobState.RUNNING or r.limit_end is None:
            continue
        there = len(set(hostlist.expand(r.node_list)) & nodes)
        count = min(elastic[r.job_id][0], there) if r.job_id in elastic else there
        if count:
            out.append((r.limit_end, count))
    return sorted(out)


def planned_start(need: int, have: int, releases: Sequence[tuple[float, int]]) -> tuple[float, int]:
    """When a blocked job that needs ``need`` (nodes, or GPUs in the simulator) and has ``have``
    now can start as ``releases`` (``(time, count)``, sorted) come in, and what is free then
    beyond its need: Slurm's backfill reservation. ``(inf, 0)`` if it never can."""
    for when, count in releases:
        have += count
        if have >= need:
            return when, have - need
    return float("inf"), 0


def fit_grows(grows: Iterable[tuple[K, int, int]], free: int) -> dict[K, int]:
    """While a job is blocked, the sizes grows are cut to (pure): each ``(key, current, wanted)``
    in order gets what fits whole in ``free`` (nodes, or GPUs in the simulator) beside its old
    allocation, or keeps its current size when that is no more. A grow's larger allocation takes
    over only once it starts, and the hand-over of the job's own nodes waits while a job that
    Slurm serves first (the blocked one) waits (:class:`hpcsched.daemon.resize.Handovers`)."""
    out = {}
    for key, current, wanted in grows:
        fits = min(wanted, max(0, free))
        out[key] = fits if fits > current else current
        free -= fits if fits > current else 0
    return out


def _neighbours(partition: Partition, others: Mapping[str, Partition]) -> dict[str, Partition]:
    """The partitions that share a node with ``partition``, itself included."""
    mine = set(partition.nodes)
    return {name: p for name, p in others.items() if name != partition.name and mine & set(p.nodes)} | {
        partition.name: partition}


def _reach(record: SlurmJobRecord, neighbours: Mapping[str, Partition]) -> set[str]:
    """The nodes a waiting job may start on that matter here: those of its partitions (a comma
    list) among ``neighbours``; empty when none is."""
    return {n for name in record.partition.split(",") if name in neighbours for n in neighbours[name].nodes}
