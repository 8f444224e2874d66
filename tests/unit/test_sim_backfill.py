"""The realistic Slurm baseline: multifactor priority (age, size, fair share) with backfill."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcsched.allocator import Cluster
from hpcsched.models import BatchLimits, ThroughputParams
from hpcsched.simulator import Application, JobSpec, RestartModel, simulate
from hpcsched.simulator.jobs import JobView, ReplayJob
from hpcsched.simulator.knowledge import observe
from hpcsched.simulator.policies import make_policy
from hpcsched.simulator.policies.slurm_backfill import FreeProfile, Multifactor, SlurmBackfillPolicy

RESTART = RestartModel.parse("30")


def perfect(name: str, seconds_on_one_gpu: float) -> Application:
    """0.1 s per step of 10 samples per GPU on any number of GPUs, and noisy enough gradients that
    a larger batch is worth nearly as much per sample: about ``g`` times faster on ``g`` GPUs."""
    return Application(
        name=name,
        params=ThroughputParams(alpha_c=0.1, beta_c=0.0, alpha_n=0.0, beta_n=0.0, alpha_r=0.0, beta_r=0.0, gamma=1.0),
        limits=BatchLimits(min_global_bsz=10, max_global_bsz=40, max_local_bsz=10),
        epoch_ends=np.array([100.0 * seconds_on_one_gpu]),
        grad_batch_sizes=np.array([10.0, 40.0]),
        grad_sqr=np.ones((2, 1)),
        grad_var=np.full((2, 1), 1e6),
    )


APPS = {"long": perfect("long", 4000.0), "short": perfect("short", 200.0)}


def job(name: str, at: float, app: str, gpus: int, user: str = "") -> JobSpec:
    return JobSpec(name, at, app, num_replicas=gpus, batch_size=10 * gpus, user=user)


def run(workload: list[JobSpec], policy: str, gpus: int) -> dict[str, tuple[float, float]]:
    """(first start, completion) of each job on one node of ``gpus`` GPUs, Slurm's timing."""
    result = simulate(workload, policy, Cluster(1, gpus), RESTART, applications=APPS, on_arrival=True)
    return {j.name: (j.first_start, j.submit_time + j.jct) for j in result.jobs}


def test_a_small_job_backfills_past_a_blocked_big_one_without_delaying_its_reservation() -> None:
    """a holds 3 of 4 GPUs for about 1,000 s; b (4 GPUs) must wait for a's end. c (1 GPU, 230 s)
    ends long before that and starts at once on the idle GPU; d (1 GPU, about 4,000 s) would still
    hold that GPU when b may start, so it waits for b. b starts the moment a ends."""
    workload = [job("a", 0.0, "long", 4), job("b", 10.0, "long", 4), job("c", 20.0, "short", 1), job("d", 30.0, "long", 1)]
    workload[0] = JobSpec("a", 0.0, "long", num_replicas=3, batch_size=30)
    times = run(workload, "slurm-backfill", 4)
    assert times["c"][0] == pytest.approx(20.0)
    assert times["c"][1] < times["a"][1]
    assert times["b"][0] == pytest.approx(times["a"][1], abs=1e-3)
    assert times["d"][0] >= times["b"][1] - 1e-3


def test_fair_share_starts_the_other_users_job_first() -> None:
    """u1's a holds both GPUs; u1's a2 and u2's b (same size) wait, a2 submitted first. Strict
    FIFO starts a2 when a ends; multifactor starts b, whose user has used nothing."""
    workload = [job("a", 0.0, "long", 2, "u1"), job("a2", 10.0, "long", 2, "u1"), job("b", 20.0, "long", 2, "u2")]
    fifo, slurm = run(workload, "static", 2), run(workload, "slurm-backfill", 2)
    assert fifo["a2"][0] < fifo["b"][0]
    assert slurm["b"][0] == pytest.approx(slurm["a"][1], abs=1e-3)
    assert slurm["a2"][0] >= slurm["b"][1] - 1e-3


def waiting(spec: JobSpec) -> JobView:
    app = APPS[spec.application]
    return observe(ReplayJob(spec=spec, app=app, total_work=app.total_work, gpus_per_node=4))


def test_age_raises_priority_enough_to_outrank_a_larger_job() -> None:
    """An old 2-GPU job and a young 4-GPU one wait for the same 4 GPUs; only one fits. With a
    day's PriorityMaxAge size wins (the young big job starts); with an hour's, an hour of waiting
    is worth more than the size difference and the old small job starts."""
    old, young = waiting(job("old", 0.0, "long", 2)), waiting(job("young", 3000.0, "long", 4))
    cluster = Cluster(1, 4)
    for max_age, starts in ((86400.0, "young"), (3600.0, "old")):
        policy = SlurmBackfillPolicy(weights=Multifactor(max_age_s=max_age))
        assert policy.priority(old, 3600.0, cluster) > policy.priority(old, 600.0, cluster)
        assert set(policy.decide(3600.0, [old, young], cluster, RESTART)) == {starts}


def test_free_profile_finds_the_first_window_that_fits() -> None:
    profile = FreeProfile(0.0, 1)
    profile.hold(100.0, math.inf, -3)  # a running 3-GPU job ends at 100: 4 free from then
    profile.hold(100.0, 300.0, 4)  # a reservation takes all 4 from 100 to 300
    assert profile.earliest(1, 50.0) == 0.0
    assert profile.earliest(1, 150.0) == 300.0
    assert profile.earliest(2, 10.0) == 300.0
    assert profile.earliest(5, 10.0) == math.inf


def test_bad_weights_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="max_age_s"):
        Multifactor(max_age_s=0.0)
    assert make_policy("slurm-backfill").name == "slurm-backfill"
