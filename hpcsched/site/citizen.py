"""The good-citizen rules of site mode (pure): what elastic jobs may hold in a partition.

hpcsched shares the cluster with people who have never heard of it, and it must never make them
wait longer. Per partition, from one ``squeue`` and one ``sinfo`` of the whole cluster:

1. A job that waits for nodes (Slurm's reason ``Resources`` or ``Priority``; not a dependency, a
   hold, a limit or a begin time, which free nodes would not end) and is not an elastic job of
   hpcsched's is served in Slurm's order (priority, then submission): its nodes are *reserved*,
   first from the idle nodes, then from what elastic jobs hold above their minimum. Those elastic
   jobs shrink, Slurm starts the waiting job on the nodes they release.
2. The first waiting job that even shrinking every elastic job to its minimum would not start
   (other jobs hold too much) *blocks*: Slurm keeps nodes for it, so nothing is reserved for the
   jobs behind it, and no elastic job shrinks for it (that would not start it sooner).
3. Elastic jobs grow only into nodes nobody waits for: never while a job is blocked in their
   partition, and never into reserved nodes.

What is left (the partition's usable nodes minus other jobs' nodes minus the reservations) is the
elastic jobs' capacity, which the allocator shares out (:mod:`.decide`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hpcsched.jobs.model import JobState
from hpcsched.slurm import hostlist
from hpcsched.slurm.parse import SlurmJobRecord

WAITS_FOR_NODES = ("Resources", "Priority")
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
        return [n for n in self.nodes if base_state(self.states[n]) == "idle"]


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

    @property
    def may_grow(self) -> bool:
        return self.blocked is None


def waits_for_nodes(record: SlurmJobRecord) -> bool:
    return record.state is JobState.PENDING and record.reason in WAITS_FOR_NODES


def jobs_in(partition: Partition, queue: Sequence[SlurmJobRecord]) -> list[SlurmJobRecord]:
    """The jobs of ``queue`` that run or wait in ``partition`` (one of a job's comma list)."""
    return [r for r in queue if r.partition == partition.name or partition.name in r.partition.split(",")]


def room(partition: Partition, queue: Sequence[SlurmJobRecord], elastic: Mapping[int, tuple[int, int]]) -> Room:
    """The elastic jobs' room in ``partition``. ``elastic`` maps the Slurm id of every elastic
    job of hpcsched's (running or waiting, grown successors too) to (minimum, current) nodes."""
    usable = set(partition.usable)
    in_partition = jobs_in(partition, queue)
    held_by_elastic = {n for r in in_partition if r.job_id in elastic and r.state is JobState.RUNNING
                       for n in hostlist.expand(r.node_list)}
    busy = {n for n in partition.nodes if base_state(partition.states[n]) != "idle"}
    foreign = frozenset((busy & usable) - held_by_elastic)
    idle = len(set(partition.idle) & usable)
    running = {r.job_id for r in in_partition if r.state is JobState.RUNNING}
    shrinkable = sum(max(0, current - low) for job_id, (low, current) in elastic.items() if job_id in running)
    waiting = sorted((r for r in in_partition if waits_for_nodes(r) and r.job_id not in elastic),
                     key=lambda r: (-r.priority, r.submit_time or 0.0, r.job_id))
    reserved, served, blocked = 0, [], None
    for r in waiting:
        need = max(1, r.node_count)
        free = idle + shrinkable - reserved
        if need > free:
            blocked = r.job_id
            break
        reserved += need
        served.append(r.job_id)
    capacity = max(0, len(usable) - len(foreign) - reserved)
    queued = sum(1 for r in in_partition if waits_for_nodes(r))
    return Room(partition.name, capacity, reserved, tuple(served), blocked, foreign, idle, queued)
