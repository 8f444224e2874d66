"""What the allocator may hand out: nodes, GPUs per node, and the limits Slurm enforces.

The allocator sees the cluster as ``num_nodes`` identical nodes with ``gpus_per_node`` GPUs each.
Nodes that are down, drained or reserved are unavailable as a whole; other users' jobs (not run by
hpcsched) occupy GPUs on the nodes they run on. What remains on each node is what hpcsched's elastic
jobs may share. Limits are those a partition or account imposes, expressed as node counts, since
that is how Slurm states them (``MaxNodes`` per job, ``GrpTRES=node=`` per account).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cluster:
    """Capacity for one allocation round.

    ``foreign_gpus`` maps a node index to the GPUs other users' jobs hold on it (at most
    ``gpus_per_node``); ``unavailable_nodes`` are indices of nodes that cannot be used at all.
    """

    num_nodes: int
    gpus_per_node: int
    unavailable_nodes: frozenset[int] = frozenset()
    foreign_gpus: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_nodes < 0 or self.gpus_per_node < 1:
            raise ValueError(f"need num_nodes >= 0 and gpus_per_node >= 1: {self}")
        bad = [n for n in (*self.unavailable_nodes, *self.foreign_gpus) if not 0 <= n < self.num_nodes]
        if bad:
            raise ValueError(f"node indices out of range: {sorted(bad)}")
        if any(not 0 <= g <= self.gpus_per_node for g in self.foreign_gpus.values()):
            raise ValueError("foreign GPUs per node must be within 0..gpus_per_node")

    def __hash__(self) -> int:
        return hash((self.num_nodes, self.gpus_per_node, self.unavailable_nodes, tuple(sorted(self.foreign_gpus.items()))))

    @functools.cached_property
    def _free(self) -> tuple[int, ...]:
        return tuple(
            0 if node in self.unavailable_nodes else self.gpus_per_node - self.foreign_gpus.get(node, 0)
            for node in range(self.num_nodes)
        )

    def free_gpus(self) -> tuple[int, ...]:
        """GPUs per node that hpcsched's jobs may use."""
        return self._free

    @functools.cached_property
    def capacity(self) -> int:
        """Total GPUs available to hpcsched's jobs."""
        return sum(self._free)

    def nodes_for(self, gpus: int) -> int:
        """Nodes a job of ``gpus`` GPUs spans when packed: whole nodes plus at most one partial."""
        return -(-gpus // self.gpus_per_node)


@dataclass(frozen=True)
class Limits:
    """Partition/account limits in nodes; ``None`` means unlimited.

    A partial node counts as a node, as it does for Slurm's node limits.
    """

    max_nodes_per_job: int | None = None
    max_nodes_per_account: int | None = None

    def __post_init__(self) -> None:
        for value in (self.max_nodes_per_job, self.max_nodes_per_account):
            if value is not None and value < 1:
                raise ValueError(f"node limits must be >= 1 when set: {self}")
