"""The faithful Pollux baseline: its restart penalty, growth cap, speedups and admission order."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsched.allocator import Cluster
from hpcsched.models import BatchLimits, ThroughputParams
from hpcsched.simulator import Application, JobSpec, RestartModel
from hpcsched.simulator.jobs import JobView, ReplayJob
from hpcsched.simulator.knowledge import observe
from hpcsched.simulator.policies import make_policy
from hpcsched.simulator.policies.elastic import pollux_policy
from hpcsched.simulator.policies.pollux import PolluxPolicy, restart_penalty

RESTART = RestartModel.parse("30")


def scalable() -> Application:
    """0.1 s per step of 10 samples per GPU on any number of GPUs and very noisy gradients: a job
    runs nearly ``g`` times faster on ``g`` GPUs, up to 64."""
    return Application(
        name="toy",
        params=ThroughputParams(alpha_c=0.1, beta_c=0.0, alpha_n=0.0, beta_n=0.0, alpha_r=0.0, beta_r=0.0, gamma=1.0),
        limits=BatchLimits(min_global_bsz=10, max_global_bsz=640, max_local_bsz=10),
        epoch_ends=np.array([1e6]),
        grad_batch_sizes=np.array([10.0, 640.0]),
        grad_sqr=np.ones((2, 1)),
        grad_var=np.full((2, 1), 1e8),
    )


APP = scalable()


def view(name: str, submitted: float, gpus: int = 0, done: float = 0.0, restarts: int = 0) -> JobView:
    """What the policy sees of a job that runs on ``gpus`` GPUs (0: waits, never ran) after
    ``done`` samples of its million."""
    job = ReplayJob(JobSpec(name, submitted, "toy", 1, 10), APP, APP.total_work, 4, declared_work=APP.total_work)
    job.work_done, job.restarts = done, restarts
    if gpus:
        job.gpus, job.largest, job.starts = gpus, gpus, 1 + restarts
        job.config = PolluxPolicy().config(observe(job), gpus)
        job.report()
    return observe(job)


def test_the_restart_penalty_applies_to_a_first_start_and_to_every_size_but_the_current() -> None:
    """Pollux prices ``max(age - restarts * 30, 0) / (age + 30)`` on any change, a first start
    included: a job submitted 30 s ago is worth half as much on any GPU; a running one keeps its
    size at full value."""
    policy = PolluxPolicy()
    cluster = Cluster(1, 4)
    new = view("new", 70.0)
    table = policy._problem(100.0, [new], cluster).tables[0]
    assert restart_penalty(new, table, 100.0).tolist() == [pytest.approx(0.5)]
    old = view("old", 0.0, gpus=2, restarts=1)
    table = policy._problem(90.0, [old], cluster).tables[0]
    factors = dict(zip(table.sizes.tolist(), restart_penalty(old, table, 90.0).tolist(), strict=True))
    assert factors[2] == 1.0
    assert factors[1] == factors[4] == pytest.approx(60.0 / 120.0)


def test_growth_is_capped_at_twice_the_largest_size_the_job_has_run_on() -> None:
    """On 64 idle GPUs a job that has only run on 2 gets 4, a job that never ran gets 1;
    without the cap the first takes far more."""
    cluster = Cluster(16, 4)
    ran, fresh = view("ran", 0.0, gpus=2), view("fresh", 0.0)
    assert PolluxPolicy().decide(600.0, [ran, fresh], cluster, RESTART) == {"ran": 4, "fresh": 1}
    uncapped = PolluxPolicy(growth_cap=False).decide(600.0, [ran], cluster, RESTART)
    assert uncapped["ran"] > 16


def test_admission_is_first_come_whatever_the_remaining_work() -> None:
    """One GPU, two waiting jobs: the one submitted first gets it, whichever of them has almost
    no work left (Pollux knows nothing of remaining work: no shortest-remaining-first)."""
    cluster = Cluster(1, 1)
    for early_done, late_done in ((0.0, 0.999e6), (0.999e6, 0.0)):
        early, late = view("early", 0.0, done=early_done), view("late", 10.0, done=late_done)
        assert PolluxPolicy().decide(120.0, [late, early], cluster, RESTART) == {"early": 1}


def test_it_is_registered_beside_the_pollux_like_preset() -> None:
    policy = make_policy("pollux-faithful")
    assert isinstance(policy, PolluxPolicy) and not policy.decides_on_arrival
    assert pollux_policy().name == "pollux"
    oracle = PolluxPolicy(oracle=True)
    assert oracle.oracle and oracle.name == "pollux-faithful-oracle"  # an upper bound, labelled
