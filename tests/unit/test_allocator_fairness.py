"""Fairness rules: a job below its fair share may catch up though resized recently, and a job
that must make room for a newcomer is the one with the most work left."""

from __future__ import annotations

import dataclasses

import pytest

from hpcsched.allocator import HPCSCHED, Cluster, ElasticJob, GoodputModel, RestartCost, allocate
from hpcsched.allocator.allocate import _weights, fair_shares
from hpcsched.allocator.candidates import goodput_at, job_table
from hpcsched.allocator.cluster import Limits
from hpcsched.allocator.policy import AllocatorPolicy
from hpcsched.models import BatchLimits, GradientNoise, ThroughputParams

SCALES = GoodputModel(
    ThroughputParams(0.05, 0.002, 0.08, 0.002, 0.02, 0.001, 1.5), GradientNoise(1.0, 4000.0), BatchLimits(64, 4096, 256, 3)
)


def running(key: str, gpus: int, work: float, at_size_s: float, restarts: int, max_gpus: int = 16) -> ElasticJob:
    return ElasticJob(
        key=key,
        model=SCALES,
        min_gpus=1,
        max_gpus=max_gpus,
        current_gpus=gpus,
        remaining_work=work,
        age_s=max(at_size_s, 400.0),
        time_in_state_s=max(at_size_s, 400.0),
        time_at_size_s=at_size_s,
        restarts=restarts,
        restart=RestartCost.fixed(30.0),
    )


def test_a_job_held_below_its_fair_share_grows_toward_it_though_resized_recently() -> None:
    """16 GPUs, two jobs, fair share 8. The short job was resized to 2 GPUs three minutes ago and
    has about twenty minutes left there (twelve were on the edge of a resize's 7x its restart);
    the long one has run at 4 GPUs for hours. Settle's full half-hour window would keep the short
    job at 2 while the long job takes the free GPUs (the short job's finish-time fairness drifting
    past 2, as cifar10 jobs' did); over its own payoff window the grow pays."""
    jobs = [running("short", 2, 1e6, at_size_s=180.0, restarts=1), running("long", 4, 1e9, at_size_s=1e4, restarts=0)]
    allocation = allocate(Cluster(4, 4), jobs)
    assert 2 < allocation["short"].target_gpus <= 8
    assert allocation["short"].reason.startswith("grows 2->")
    before = allocate(Cluster(4, 4), jobs, dataclasses.replace(HPCSCHED, fair_recovery=False))
    assert before["short"].target_gpus == 2 and before["long"].target_gpus > 4


def test_beyond_its_fair_share_a_recently_resized_job_is_still_damped() -> None:
    """The same job at its fair share of 8 GPUs: growing into the free GPUs would pay if it had
    kept its size for hours, but three minutes after a resize settle holds it (flip-flops)."""
    other = running("other", 4, 1e9, at_size_s=1e4, restarts=0, max_gpus=4)
    recent = allocate(Cluster(4, 4), [running("job", 8, 4e6, at_size_s=180.0, restarts=1), other])
    settled = allocate(Cluster(4, 4), [running("job", 8, 4e6, at_size_s=1e4, restarts=1), other])
    assert recent["job"].target_gpus == 8 and recent["job"].reason.startswith("keeps 8 GPUs")
    assert settled["job"].target_gpus > 8


def one_gpu_job(key: str, current: int, seconds_left: float, in_state_s: float) -> ElasticJob:
    work = seconds_left * goodput_at(SCALES, 2, 1)
    return ElasticJob(
        key=key,
        model=SCALES,
        min_gpus=1,
        max_gpus=1,
        current_gpus=current,
        remaining_work=work,
        age_s=in_state_s,
        time_in_state_s=in_state_s,
        time_at_size_s=in_state_s,
        restart=RestartCost.fixed(30.0),
    )


def test_a_newcomer_preempts_the_job_with_the_most_work_left_not_the_one_that_ran_longest() -> None:
    """Two GPUs held by one-GPU jobs that have both run over an hour: one two minutes from its end
    (it has run longest), one with ten hours to go. A one-minute job arrives and preempts the
    long one; stopping the other would restart it for its last two minutes."""
    jobs = [
        one_gpu_job("near-end", 1, 120.0, 7200.0),
        one_gpu_job("long", 1, 36000.0, 4000.0),
        one_gpu_job("newcomer", 0, 60.0, 30.0),
    ]
    allocation = allocate(Cluster(1, 2), jobs)
    assert allocation.targets() == {"near-end": 1, "long": 0, "newcomer": 1}
    assert allocation["long"].reason.startswith("stops")


def test_a_climbing_job_grows_on_into_idle_gpus_right_after_its_last_grow() -> None:
    """The job of the test above at its fair share of 8 GPUs, grown there three minutes ago, but
    it has never run larger (its growth cap lets it double): a climb, not a flip-flop, pays its
    restart with hysteresis only and goes on into the idle GPUs. Unless settle_climbs (before
    tuning), or the job was shrunk to 8 (it ran larger before: not climbing)."""
    other = running("other", 4, 1e9, at_size_s=1e4, restarts=0, max_gpus=4)
    job = dataclasses.replace(running("job", 8, 4e6, at_size_s=180.0, restarts=1), climbing=True)
    unsettled = dataclasses.replace(HPCSCHED, settle_climbs=False)
    assert allocate(Cluster(4, 4), [job, other], unsettled)["job"].target_gpus > 8
    settled = dataclasses.replace(HPCSCHED, settle_climbs=True)
    assert allocate(Cluster(4, 4), [job, other], settled)["job"].target_gpus == 8
    shrunk = dataclasses.replace(job, climbing=False)
    assert allocate(Cluster(4, 4), [shrunk, other], unsettled)["job"].target_gpus == 8


def test_remaining_time_weights_rank_jobs_by_length_clipped_to_the_policys_range() -> None:
    """Three waiting jobs of 1e4, 1e5 and 1e8 units of work: the shortest is weighted up to
    ``srpt_range`` times the median's, the longest down to 1/``srpt_range`` (so it never becomes
    free buffer capacity), and a range below 1 is refused."""
    cluster = Cluster(4, 4)
    jobs = [dataclasses.replace(running(f"j{i}", 0, work, 0.0, 0), age_s=0.0, time_in_state_s=0.0)
            for i, work in enumerate((1e4, 1e5, 1e8))]
    tables = [job_table(job, cluster, Limits()) for job in jobs]
    fair = fair_shares(jobs, tables, cluster.capacity)
    for bound in (4.0, 8.0):
        policy = dataclasses.replace(HPCSCHED, srpt_weight=1.0, srpt_range=bound)
        assert _weights(jobs, tables, fair, cluster.capacity, policy) == pytest.approx([bound, 1.0, 1.0 / bound])
    squared = dataclasses.replace(HPCSCHED, srpt_weight=2.0, srpt_range=1e9)
    assert _weights(jobs, tables, fair, cluster.capacity, squared) == pytest.approx([100.0, 1.0, 1e-6])
    with pytest.raises(ValueError, match="srpt_range"):
        AllocatorPolicy(srpt_range=0.5)
