"""Whether a partition can ever start a job of a given shape (pure).

Slurm refuses at submit a job that asks for more CPUs or GPUs per node than any node has, or an
unknown partition; but it queues a job that asks for more nodes than the partition has or allows
(``MaxNodes``), and that job waits for ever with the reason PartitionNodeLimit or PartitionConfig.
:func:`check_fits` refuses all of these before anything is written, naming the limit, from what
``scontrol -o show partition`` and ``sinfo --json`` printed (:mod:`hpcsched.slurm.parse`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hpcsched.errors import ValidationError
from hpcsched.planning.fields import format_count
from hpcsched.slurm.parse import NodeRecord, PartitionRecord


@dataclass(frozen=True)
class JobShape:
    """What one allocation of a job asks for: ``nodes`` is the count sbatch asks for first (an
    elastic job's minimum or start size)."""

    partition: str | None
    nodes: int
    cpus_per_node: int
    gpus_per_node: int


def check_fits(shape: JobShape, partitions: Sequence[PartitionRecord], nodes: Sequence[NodeRecord]) -> None:
    """Raise :class:`ValidationError` when the partition (given, else the default) can never start
    the job; say nothing when it can, or when there is no default partition (sbatch decides).
    Of several partitions (``gpu,gpu-long``) each must exist and one must fit: Slurm starts the
    job in whichever can start it first."""
    names = shape.partition.split(",") if shape.partition else [None]
    chosen = [_chosen(name, partitions) for name in names]
    refusals = []
    for partition in chosen:
        try:
            _check_partition(shape, partition, nodes)
            return
        except ValidationError as e:
            refusals.append(e)
    raise refusals[0]


def _check_partition(shape: JobShape, partition: PartitionRecord | None, nodes: Sequence[NodeRecord]) -> None:
    if partition is None:
        return
    members = [n for n in nodes if partition.name in n.partitions]
    total = partition.total_nodes or len(members)
    if shape.nodes > total:
        raise ValidationError("--nodes", f"partition {partition.name} has {format_count(total, 'node')}; "
                                         f"--nodes {shape.nodes} can never start")
    if partition.max_nodes is not None and shape.nodes > partition.max_nodes:
        most = format_count(partition.max_nodes, "node")
        raise ValidationError("--nodes", f"partition {partition.name} allows at most {most} per job "
                                         f"(MaxNodes); --nodes {shape.nodes} can never start")
    if members:
        _check_node_sizes(shape, partition, members)


def _chosen(name: str | None, partitions: Sequence[PartitionRecord]) -> PartitionRecord | None:
    if name is None:
        return next((p for p in partitions if p.default), None)
    found = next((p for p in partitions if p.name == name), None)
    if found is None:
        known = ", ".join(sorted(p.name for p in partitions)) or "none"
        raise ValidationError("--partition", f"invalid partition {name}: the cluster's partitions are {known}")
    return found


def _check_node_sizes(shape: JobShape, partition: PartitionRecord, members: Sequence[NodeRecord]) -> None:
    cpu_cap = partition.max_cpus_per_node
    usable = [min(n.cpus, cpu_cap) if cpu_cap is not None else n.cpus for n in members]
    if shape.cpus_per_node > max(usable):
        raise ValidationError("--cpus-per-node", f"partition {partition.name} gives a job at most "
                                                 f"{format_count(max(usable), 'CPU')} per node; "
                                                 f"--cpus-per-node {shape.cpus_per_node} can never start")
    most_gpus = max(n.gpus for n in members)
    if shape.gpus_per_node > most_gpus:
        raise ValidationError("--gpus-per-node", f"partition {partition.name} has at most "
                                                 f"{format_count(most_gpus, 'GPU')} per node; "
                                                 f"--gpus-per-node {shape.gpus_per_node} can never start")
    fitting = sum(1 for n, cpus in zip(members, usable, strict=True)
                  if cpus >= shape.cpus_per_node and n.gpus >= shape.gpus_per_node)
    if shape.nodes > fitting:
        raise ValidationError("--nodes", f"partition {partition.name} has {format_count(fitting, 'node')} with "
                                         f"{format_count(shape.cpus_per_node, 'CPU')} and "
                                         f"{format_count(shape.gpus_per_node, 'GPU')}; --nodes {shape.nodes} can never start")
