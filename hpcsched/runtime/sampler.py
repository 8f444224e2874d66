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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

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


class ElasticBatchSampler(Sampler[list[int]]):
    """A batch sampler for ``DataLoader(dataset, batch_sampler=...)`` that resumes mid-epoch.

    Call :meth:`set_epoch` with the epoch and the number of samples of it already consumed
    (by all ranks together, at whatever world size) before iterating.
    """

    def __init__(self, size: int, batch_size: int, *, rank: int, world_size: int, seed: int = 0, shuffle: bool = True) -> None:
        super().__init__()
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: batch_size={batch_size} rank={rank} world_size={world_size}")
        if size < world_size:
            raise ValueError(f"a dataset of {size} samples cannot feed {world_size} ranks")
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start = 0, 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.size:
            raise ValueError(f"start position {start} is outside the epoch of {self.size} samples")
        self.epoch, self.start = epoch, start

    def steps(self) -> list[tuple[int, int]]:
        """The global [begin, end) ranges of the remaining steps of the epoch."""
        return list(plan_steps(self.size, self.start, self.global_batch, self.world_size))

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_permutation(self.size, self.seed, self.epoch, self.shuffle)
        for begin, end in self.steps():
            yield [order[p] for p in shard(begin, end, self.rank, self.world_size)]

    def __len__(self) -> int:
        return len(self.steps())

    def steps_per_epoch(self) -> int:
        """Steps of a whole epoch at this world size (for progress estimates)."""
        return len(list(plan_steps(self.size, 0, self.global_batch, self.world_size)))
