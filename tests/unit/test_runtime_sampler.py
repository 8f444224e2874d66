"""Elastic sampler: every sample exactly once per epoch, across resizes at any point (reliability C5, D7).

World sizes are simulated in-process by giving the sampler explicit rank and world_size.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from hpcsched.runtime.sampler import ElasticBatchSampler, epoch_permutation, plan_steps


def run_segment(
    size: int, batch: int, world: int, epoch: int, start: int, steps: int | None, seed: int = 0
) -> tuple[list[list[list[int]]], int]:
    """Up to ``steps`` global steps from ``start`` at ``world`` ranks: per step, each rank's batch; the new position."""
    samplers = [ElasticBatchSampler(size, batch, rank=r, world_size=world, seed=seed) for r in range(world)]
    for sampler in samplers:
        sampler.set_epoch(epoch, start)
    plan = samplers[0].steps()[:steps] if steps is not None else samplers[0].steps()
    per_rank = [list(sampler)[: len(plan)] for sampler in samplers]
    batches = [[per_rank[r][i] for r in range(world)] for i in range(len(plan))]
    return batches, plan[-1][1] if plan else start


def check_step_shapes(batches: list[list[list[int]]], batch: int) -> None:
    for step in batches:
        sizes = [len(b) for b in step]
        assert min(sizes) >= 1, "a rank got an empty batch"
        assert max(sizes) - min(sizes) <= 1
        assert max(sizes) <= batch + 1


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 300),
    batch=st.integers(1, 17),
    before=st.integers(1, 4),
    after=st.integers(1, 4),
    stop_fraction=st.floats(0, 1),
    epoch=st.integers(0, 5),
)
def test_exactly_once_across_a_resize(size: int, batch: int, before: int, after: int, stop_fraction: float, epoch: int) -> None:
    if size < before:
        with pytest.raises(ValueError, match="cannot feed"):
            ElasticBatchSampler(size, batch, rank=0, world_size=before)
        return
    total_steps = len(list(plan_steps(size, 0, batch * before, before)))
    stop_after = round(stop_fraction * total_steps)
    first, position = run_segment(size, batch, before, epoch, 0, stop_after)
    if size - position >= after:
        second, _ = run_segment(size, batch, after, epoch, position, None)
        skipped: set[int] = set()
    else:  # documented: an epoch resumed with fewer samples left than ranks skips them
        second = []
        skipped = set(epoch_permutation(size, 0, epoch)[position:])
    check_step_shapes(first, batch)
    check_step_shapes(second, batch)
    seen = Counter(i for step in first + second for rank_batch in step for i in rank_batch)
    assert set(seen.values()) <= {1}, "a sample was seen twice"
    assert set(seen) | skipped == set(range(size)) and not set(seen) & skipped
    assert len(skipped) < after
    assert position == sum(len(b) for step in first for b in step)


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(4, 200),
    batch=st.integers(1, 9),
    segments=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 12)), min_size=1, max_size=5),
)
def test_exactly_once_across_many_resizes(size: int, batch: int, segments: list[tuple[int, int]]) -> None:
    position, seen = 0, Counter[int]()
    for world, steps in segments:
        if size - position < world:
            break
        batches, position = run_segment(size, batch, world, 0, position, steps)
        seen.update(i for step in batches for rank_batch in step for i in rank_batch)
    if size - position >= 1:
        batches, position = run_segment(size, batch, 1, 0, position, None)
        seen.update(i for step in batches for rank_batch in step for i in rank_batch)
    assert position == size
    assert sorted(seen.elements()) == list(range(size))


def test_permutation_is_a_pure_function_of_seed_and_epoch() -> None:
    assert epoch_permutation(50, 1, 2) == epoch_permutation(50, 1, 2)
    assert sorted(epoch_permutation(50, 1, 2)) == list(range(50))
    assert epoch_permutation(50, 0, 1) != epoch_permutation(50, 1, 0)
    assert epoch_permutation(50, 0, 0) != epoch_permutation(50, 0, 1)
    assert epoch_permutation(5, 0, 0, shuffle=False) == [0, 1, 2, 3, 4]


def test_small_tail_is_merged_into_the_last_step() -> None:
    # 10 samples, global batch 8, 2 ranks: a last step of 2 is fine; 9 samples would leave 1 < 2 ranks.
    assert list(plan_steps(10, 0, 8, 2)) == [(0, 8), (8, 10)]
    assert list(plan_steps(9, 0, 8, 2)) == [(0, 9)]
    assert list(plan_steps(9, 8, 8, 2)) == []


def test_works_as_a_dataloader_batch_sampler() -> None:
    dataset = TensorDataset(torch.arange(23))
    sampler = ElasticBatchSampler(len(dataset), 4, rank=1, world_size=2, seed=3)
    sampler.set_epoch(2, start=8)
    got = [batch.tolist() for (batch,) in DataLoader(dataset, batch_sampler=sampler)]
    order = epoch_permutation(23, 3, 2)
    assert got == [[order[9], order[11], order[13], order[15]], [order[17], order[19], order[21]]]
    assert len(sampler) == 2 and sampler.steps_per_epoch() == 3


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size=0"):
        ElasticBatchSampler(10, 0, rank=0, world_size=1)
    with pytest.raises(ValueError, match="rank=2"):
        ElasticBatchSampler(10, 1, rank=2, world_size=2)
    sampler = ElasticBatchSampler(10, 1, rank=0, world_size=1)
    with pytest.raises(ValueError, match="outside the epoch"):
        sampler.set_epoch(0, start=11)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 200),
    batch=st.integers(1, 9),
    world=st.integers(1, 4),
    accum=st.integers(0, 3),
    measure_every=st.integers(0, 3),
    first_step=st.integers(0, 7),
    start_fraction=st.floats(0, 1),
)
def test_micro_batches_cover_the_epoch_once_and_ranks_agree_on_their_number(
    size: int, batch: int, world: int, accum: int, measure_every: int, first_step: int, start_fraction: float
) -> None:
    """Gradient accumulation (and measurement splits) re-cut each rank's share of a step, never the epoch."""
    if size < world:
        return
    start = int(start_fraction * size)
    samplers = [
        ElasticBatchSampler(
            size, batch, rank=r, world_size=world, accum_steps=accum, measure_every=measure_every, first_step=first_step
        )
        for r in range(world)
    ]
    for sampler in samplers:
        sampler.set_epoch(2, start)
    order = epoch_permutation(size, 0, 2)
    plans = [sampler.micro_batches() for sampler in samplers]
    batches = [list(sampler) for sampler in samplers]
    assert all(len(plan) == len(plans[0]) for plan in plans)  # every rank runs the same micro-steps
    seen = Counter(i for rank in batches for b in rank for i in b)
    steps = samplers[0].steps()
    expected = {order[p] for begin, end in steps for p in range(begin, end)}
    assert seen == Counter(expected)
    for micro, rank0 in zip(plans[0], batches[0], strict=True):
        assert len(rank0) == micro.size >= 1
        assert micro.count <= (accum + 1 if accum or not measure_every else 2)
    numbers = sorted({m.step for m in plans[0]})
    assert numbers == list(range(first_step + 1, first_step + 1 + len(steps)))
    for number in numbers:  # within a step, micro-batches differ by at most one sample
        sizes = [m.size for m in plans[0] if m.step == number]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == next(m.share for m in plans[0] if m.step == number)
