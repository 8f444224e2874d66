"""Elastic sharding of a map-style dataset: every sample once per epoch, across resizes.

An epoch is one permutation of the dataset, a pure function of (seed, epoch), the same on every
rank and at every world size. Training walks it from the front: each global step takes the next
``batch_size * world_size`` positions and rank r takes every world_size-th of them, starting at r.
The only state is the number of positions consumed in the epoch, so an attempt that resumes at
another world size continues from that position with its own sharding, and over the epoch each
sample is seen exactly once.

Two tails are handled so that no rank ever gets an empty batch (DDP needs every rank in every
all-reduce, and the mean of an empty loss is NaN): a last step that would leave fewer samples than
ranks takes them too (some ranks get one sample more), and an epoch resumed with fewer samples
left than ranks skips those (at most world_size - 1) samples for that epoch.

Gradient accumulation splits each rank's share of a step into ``accum_steps + 1`` near-equal
micro-batches (fewer if the share is smaller). For measuring the gradient noise on a single
replica without accumulation (``AdaptiveBatch(noise_probe="split")``), ``measure_every`` splits
every n-th step in two (:class:`MicroBatch` tells the trainer which micro-batch of which step
each batch is).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed for (seed, epoch) without collisions such as (0, 1) vs (1, 0)."""
    digest = hashlib.sha256(f"hpcsched-sampler:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def epoch_permutation(size: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The dataset indices in the order epoch ``epoch`` visits them."""
    if not shuffle:
        return list(range(size))
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    order: list[int] = torch.randperm(size, generator=generator).tolist()
    return order


def plan_steps(size: int, start: int, global_batch: int, world_size: int) -> Iterator[tuple[int, int]]:
    """The [begin, end) positions of the permutation consumed by each global step from ``start``."""
    if global_batch < world_size:
        raise ValueError(f"global batch {global_batch} is smaller than the world size {world_size}")
    if size - start < world_size:
        return
    position = start
    while position < size:
        end = position + global_batch
        if size - end < world_size:
            end = size
        yield position, end
        position = end


def shard(begin: int, end: int, rank: int, world_size: int) -> range:
    """The positions in [begin, end) that belong to ``rank``: near-equal, differing by at most one."""
    return range(begin + rank, end, world_size)


@dataclass(frozen=True)
class MicroBatch:
    """One batch this rank yields: micro-batch ``index`` of ``count`` of global step ``step``
    (1-based, counted over the whole run), which covers positions [begin, end) of the epoch.
    ``size`` samples of the rank's ``share`` of the step are in it."""

    step: int
    begin: int
    end: int
    index: int
    count: int
    size: int
    share: int

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


def micro_split(share: range, count: int) -> list[range]:
    """``share`` cut into ``count`` consecutive, near-equal, non-empty parts (``count <= len``)."""
    return [share[i * len(share) // count : (i + 1) * len(share) // count] for i in range(count)]


class ElasticBatchSampler(Sampler[list[int]]):
    """A batch sampler for ``DataLoader(dataset, batch_sampler=...)`` that resumes mid-epoch.

    Call :meth:`set_epoch` with the epoch and the number of samples of it already consumed
    (by all ranks together, at whatever world size) before iterating. ``batch_size`` is the
    samples per rank per micro-step; a global step takes ``batch_size * world_size *
    (accum_steps + 1)`` samples. ``first_step`` is the number of steps run before this sampler's
    first one (it numbers :class:`MicroBatch` steps, and ``measure_every`` counts from it).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        rank: int,
        world_size: int,
        seed: int = 0,
        shuffle: bool = True,
        accum_steps: int = 0,
        measure_every: int = 0,
        first_step: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: batch_size={batch_size} rank={rank} world_size={world_size}")
        if accum_steps < 0 or measure_every < 0 or first_step < 0:
            raise ValueError(f"bad sampler arguments: accum_steps={accum_steps} measure_every={measure_every}")
        if size < world_size:
            raise ValueError(f"a dataset of {size} samples cannot feed {world_size} ranks")
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.accum_steps, self.measure_every, self.first_step = accum_steps, measure_every, first_step
        self.epoch, self.start = 0, 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size * (self.accum_steps + 1)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.size:
            raise ValueError(f"start position {start} is outside the epoch of {self.size} samples")
        self.epoch, self.start = epoch, start

    def steps(self) -> list[tuple[int, int]]:
        """The global [begin, end) ranges of the remaining steps of the epoch."""
        return list(plan_steps(self.size, self.start, self.global_batch, self.world_size))

    def _micro_count(self, step: int, begin: int, end: int) -> int:
        wanted = self.accum_steps + 1
        if wanted == 1 and self.measure_every and step % self.measure_every == 0:
            wanted = 2
        return max(1, min(wanted, (end - begin) // self.world_size))

    def plan(self) -> Iterator[tuple[MicroBatch, range]]:
        """Each micro-batch of the rest of the epoch with its positions (this rank's share)."""
        for number, (begin, end) in enumerate(self.steps(), start=self.first_step + 1):
            share = shard(begin, end, self.rank, self.world_size)
            parts = micro_split(share, self._micro_count(number, begin, end))
            for index, part in enumerate(parts):
                yield MicroBatch(number, begin, end, index, len(parts), len(part), len(share)), part

    def micro_batches(self) -> list[MicroBatch]:
        """What :meth:`__iter__` yields, as descriptions, in the same order."""
        return [micro for micro, _ in self.plan()]

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_permutation(self.size, self.seed, self.epoch, self.shuffle)
        for _, positions in self.plan():
            yield [order[p] for p in positions]

    def __len__(self) -> int:
        return sum(1 for _ in self.plan())

    def steps_per_epoch(self) -> int:
        """Steps of a whole epoch at this world size (for progress estimates)."""
        return len(list(plan_steps(self.size, 0, self.global_batch, self.world_size)))
