"""Packing jobs onto nodes: whole nodes plus at most one partial node per job.

A job of ``g`` GPUs takes ``g // G`` otherwise free nodes and one piece of ``g % G`` GPUs on a
node with room (best fit: the fullest node that still has room), so every job spans exactly
``ceil(g / G)`` nodes, the node count its step time was predicted for. Whole nodes for multi-node
jobs match how Slurm allocates them with ``--exclusive``-style requests; the partial piece lets
small jobs share a node, as on Pollux's 4-GPU nodes.

:class:`NodeLedger` is the mutable scratchpad of one allocation round (never shared): the
allocator only moves a job to a size the ledger can place, so the final packing is a proof that
the decision fits, and tests check it node by node.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .candidates import IntArray

Holding = tuple[tuple[int, int], ...]


class NodeLedger:
    """Free GPUs per node, bucketed by how many are free, and what each job holds."""

    def __init__(self, free: Sequence[int], gpus_per_node: int) -> None:
        self.per_node = gpus_per_node
        self.free = list(free)
        self.buckets: list[set[int]] = [set() for _ in range(gpus_per_node + 1)]
        for node, count in enumerate(self.free):
            self.buckets[count].add(node)
        self.holdings: dict[int, Holding] = {}

    def _set(self, node: int, count: int) -> None:
        self.buckets[self.free[node]].discard(node)
        self.free[node] = count
        self.buckets[count].add(node)

    def release(self, job: int) -> Holding:
        held = self.holdings.pop(job, ())
        for node, gpus in held:
            self._set(node, self.free[node] + gpus)
        return held

    def _restore(self, job: int, held: Holding) -> None:
        for node, gpus in held:
            self._set(node, self.free[node] - gpus)
        if held:
            self.holdings[job] = held

    def place(self, job: int, gpus: int) -> bool:
        """Move ``job`` to ``gpus`` GPUs (0 releases it); False and no change if it cannot fit."""
        held = self.release(job)
        if gpus == 0:
            return True
        whole, piece = divmod(gpus, self.per_node)
        full = self.buckets[self.per_node]
        partial = next((k for k in range(piece, self.per_node) if self.buckets[k]), None) if piece else None
        spare_full = len(full) - whole
        if spare_full < 0 or (piece and partial is None and spare_full < 1):
            self._restore(job, held)
            return False
        taken = [(node, self.per_node) for node in sorted(full)[:whole]]
        for node, _ in taken:
            self._set(node, 0)
        if piece:
            node = min(self.buckets[partial]) if partial is not None else min(full)
            self._set(node, self.free[node] - piece)
            taken.append((node, piece))
        self.holdings[job] = tuple(taken)
        return True

    def placeable(self, job: int, sizes: IntArray) -> IntArray:
        """Which of ``sizes`` the job could move to now (1/0 per size), its own GPUs counted free."""
        gain = {node: gpus for node, gpus in self.holdings.get(job, ())}
        full = len(self.buckets[self.per_node]) + sum(1 for n, g in gain.items() if self.free[n] + g == self.per_node)
        partial = next((k for k in range(self.per_node - 1, 0, -1) if any(n not in gain for n in self.buckets[k])), 0)
        partial = max([partial] + [self.free[n] + g for n, g in gain.items() if self.free[n] + g < self.per_node])
        whole, piece = np.divmod(sizes, self.per_node)
        fits = (whole <= full) & ((piece == 0) | (piece <= partial) | (whole < full))
        return np.asarray(fits, np.int64)
