"""The simulation loop on toy applications whose every number can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsched.allocator import Cluster
from hpcsched.models import BatchLimits, ThroughputParams
from hpcsched.simulator import Application, JobSpec, RestartModel, simulate


def toy(name: str = "toy", work: float = 6000.0, epochs: int = 1, max_gpus: int = 1 << 30) -> Application:
    """One GPU: 0.1 s per step at any local batch; two GPUs on a node add 0.1 s of all-reduce
    (no overlap, gamma = 1). No gradient noise: a batch of M = 10 * k is worth 1/k per sample.
    So at batch 10 on one GPU: 100 samples/s; at batch 20 on two GPUs: 20 / 0.2 * 0.5 = 50."""
    return Application(
        name=name,
        params=ThroughputParams(alpha_c=0.1, beta_c=0.0, alpha_n=0.1, beta_n=0.0, alpha_r=0.1, beta_r=0.0, gamma=1.0),
        limits=BatchLimits(min_global_bsz=10, max_global_bsz=40, max_local_bsz=10),
        epoch_ends=np.linspace(work / epochs, work, epochs),
        grad_batch_sizes=np.array([10.0, 40.0]),
        grad_sqr=np.ones((2, epochs)),
        grad_var=np.zeros((2, epochs)),
        max_gpus=max_gpus,
    )


WORKLOAD = [
    JobSpec("a", 0.0, "toy", num_replicas=1, batch_size=10),
    JobSpec("b", 10.0, "toy", num_replicas=2, batch_size=20),
    JobSpec("c", 20.0, "toy", num_replicas=1, batch_size=10),
]


def test_static_fifo_on_one_node_matches_the_hand_computed_schedule() -> None:
    """One node with 2 GPUs, decisions every 60 s, every start pauses 30 s; a runs 60 s on one GPU,
    b 120 s on two (50 samples/s for 6,000), c 60 s on one.

    * t=0: a starts, pauses to 30, trains 30..90: JCT 90.
    * t=10, 20: b (2 GPUs) heads the queue but 1 GPU is free; a ends at 90, so b's reservation is
      at 90 and c (would end at 20+30+60 = 110, on the GPU b needs) may not backfill.
    * t=90: a ends and Slurm starts b at once (not at the next round): trains 120..240: JCT 230.
    * t=240: b ends, c starts: trains 270..330: JCT 310.

    Event times are exact to the engine's microsecond of slack per job end. (Slurm's timing:
    ``on_arrival``.)
    """
    result = simulate(WORKLOAD, "static", Cluster(1, 2), RestartModel.parse("30"), applications={"toy": toy()}, on_arrival=True)
    jcts = {job.name: job.jct for job in result.jobs}
    assert jcts == pytest.approx({"a": 90.0, "b": 230.0, "c": 310.0}, abs=1e-5)
    assert {job.name: job.first_start for job in result.jobs} == pytest.approx({"a": 0.0, "b": 90.0, "c": 240.0}, abs=1e-5)
    metrics = result.metrics()
    assert metrics["avg_jct"] == pytest.approx(210.0)
    assert metrics["makespan"] == pytest.approx(330.0)
    assert metrics["restarts"] == 0
    # allocated GPU-seconds: a 90 (30 pause + 60), b 2 x 150, c 90 = 480 of 2 x 330
    assert metrics["utilisation"] == pytest.approx(480.0 / 660.0)


def test_tiresias_preempts_the_later_job_when_the_earlier_one_fits() -> None:
    """Same jobs under Tiresias (all stay in the first queue, first come first served):

    * t=60: a holds 1 GPU, b does not fit, c takes the other GPU: pauses to 90, trains 90..120.
    * t=120: a is done; b (ahead of c) takes both GPUs, c is preempted half done. b: 150..270.
    * t=300: c resumes (one restart): pause to 330, its last 30 s of work to 360: JCT 340.
    """
    result = simulate(WORKLOAD, "tiresias", Cluster(1, 2), RestartModel.parse("30"), applications={"toy": toy()})
    assert {job.name: job.jct for job in result.jobs} == pytest.approx({"a": 90.0, "b": 260.0, "c": 340.0}, abs=1e-9)
    assert {job.name: job.restarts for job in result.jobs} == {"a": 0, "b": 0, "c": 1}
    assert result.metrics()["restart_time_fraction"] == pytest.approx(30.0 / 510.0)


@pytest.mark.parametrize("on_arrival", [False, True])
@pytest.mark.parametrize("policy", ["static", "hpcsched", "pollux", "tiresias"])
def test_every_policy_gets_the_same_decision_timing(policy: str, on_arrival: bool) -> None:
    """A lone job arrives at t=30 on an idle node (no start pause, 60 s of work on one GPU). In
    rounds only, every policy starts it at the 60 s round (it ends at 120); with starts on
    arrival, as Slurm schedules on submission, every policy starts it at once (it ends at 90). The
    job runs on one GPU at most, so no policy's guess about a second one changes its run."""
    late = [JobSpec("late", 30.0, "toy", num_replicas=1, batch_size=10)]
    apps = {"toy": toy(max_gpus=1)}
    result = simulate(late, policy, Cluster(1, 2), RestartModel.parse("0"), applications=apps, on_arrival=on_arrival)
    assert result.jobs[0].jct == pytest.approx(60.0 if on_arrival else 90.0, abs=1e-9)
    assert result.jobs[0].first_start == pytest.approx(30.0 if on_arrival else 60.0)


def test_a_job_arriving_between_rounds_gets_only_idle_gpus() -> None:
    """hpcsched: a holds one of two GPUs; b arrives at 10 and takes the idle one at once, and a
    is not resized until the next round (a start between rounds restarts nobody). One GPU each at
    most, so b does not try a second one when a ends."""
    jobs = [JobSpec("a", 0.0, "toy", num_replicas=1, batch_size=10), JobSpec("b", 10.0, "toy", num_replicas=1, batch_size=10)]
    apps = {"toy": toy(max_gpus=1)}
    result = simulate(jobs, "hpcsched", Cluster(1, 2), RestartModel.parse("0"), applications=apps, on_arrival=True)
    by_name = {job.name: job for job in result.jobs}
    assert by_name["b"].first_start == pytest.approx(10.0)
    assert by_name["a"].jct == pytest.approx(60.0)
    assert by_name["b"].jct == pytest.approx(60.0)
    assert result.metrics()["restarts"] == 0


def test_epoch_boundaries_inside_an_interval_are_exact() -> None:
    """Ten epochs of 600 samples: the completion time does not depend on how they split."""
    apps = {"toy": toy(epochs=10)}
    result = simulate(WORKLOAD[:1], "static", Cluster(1, 2), RestartModel.parse("0"), applications=apps)
    assert result.jobs[0].jct == pytest.approx(60.0)


def philly_like(count: int) -> list[JobSpec]:
    rng = np.random.default_rng(1)
    return [
        JobSpec(f"j{i}", float(rng.integers(0, 600)), "toy", num_replicas=int(rng.integers(1, 4)), batch_size=0,
                duration_s=float(rng.integers(60, 900)))
        for i in range(count)
    ]


@pytest.mark.parametrize("policy", ["static", "tiresias", "pollux", "hpcsched"])
def test_results_are_deterministic_for_a_seed(policy: str) -> None:
    apps = {"toy": toy(work=60000.0, epochs=3)}
    runs = [simulate(philly_like(12), policy, Cluster(2, 2), RestartModel.parse("slurm"), seed=7, applications=apps)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert all(job.jct > 0 for job in runs[0].jobs)


def test_slurm_restart_waits_follow_the_seed() -> None:
    apps = {"toy": toy(work=60000.0, epochs=3)}
    results = [simulate(philly_like(12), "hpcsched", Cluster(2, 2), RestartModel.parse("slurm"), seed=s,
                        applications=apps) for s in (1, 2)]
    assert results[0].jobs != results[1].jobs


def test_fixed_duration_jobs_take_their_duration_alone() -> None:
    spec = JobSpec("p", 0.0, "toy", num_replicas=1, batch_size=0, duration_s=450.0)
    result = simulate([spec], "static", Cluster(1, 2), RestartModel.parse("0"), applications={"toy": toy(epochs=4)})
    assert result.jobs[0].jct == pytest.approx(450.0)


def test_elastic_policies_fill_an_empty_cluster_and_never_exceed_it() -> None:
    apps = {"toy": toy(work=60000.0, epochs=3)}
    for policy in ("pollux", "hpcsched"):
        result = simulate(philly_like(6), policy, Cluster(2, 2), RestartModel.parse("30"), applications=apps)
        assert max(used for _, used in result.usage) <= 4
        assert result.metrics()["worst_ftf"] > 0


def test_unknown_policy_and_application_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        simulate(WORKLOAD, "fifo", Cluster(1, 2), RestartModel(), applications={"toy": toy()})
    with pytest.raises(ValueError, match="unknown application"):
        simulate([JobSpec("x", 0.0, "bert", 1, 12)], "static", Cluster(1, 2), RestartModel(), applications={"toy": toy()})


class Scripted:
    """One GPU until ``grow_at``, then two; a fixed batch of 10 per GPU (the toy's 100 samples/s on
    one GPU, 50 on two of one node)."""

    name = "scripted"
    decides_on_arrival = False

    def __init__(self, before_break: bool, grow_at: float = 60.0) -> None:
        self.grows_before_break = before_break
        self.grow_at = grow_at

    def decide(self, now, jobs, cluster, restart):  # type: ignore[no-untyped-def]
        return {job.name: 1 if now < self.grow_at else 2 for job in jobs}

    def admit(self, now, jobs, cluster, restart):  # type: ignore[no-untyped-def]
        return self.decide(now, jobs, cluster, restart), {}

    def config(self, job, gpus):  # type: ignore[no-untyped-def]
        from hpcsched.simulator.jobs import fixed_config

        return fixed_config(job.app, gpus, 10 * gpus)

    def max_gpus(self, job):  # type: ignore[no-untyped-def]
        return 2


def test_a_make_before_break_grow_trains_on_at_the_old_size_while_the_new_allocation_waits() -> None:
    """slurm restarts, one job alone on a 2-GPU node (load 1/2: mean queue wait 60 s), seed 16.
    Start at 0: queue wait w1 + start 5 s, then 100 samples/s. Grow at 60: a checkpoint-restart
    pauses w2 + 15 s; make-before-break trains on at 100/s for w2, then pauses 15 s. At 50/s
    after the grow, the job ends 2 * w2 earlier (each second at 100/s is worth two at 50/s)."""
    apps = {"toy": toy(work=60000.0)}
    spec = [JobSpec("a", 0.0, "toy", num_replicas=1, batch_size=10)]
    rng = np.random.default_rng(16)
    w1, w2 = rng.exponential(60.0), rng.exponential(60.0)
    assert 5 + w1 < 60  # the job trains before the grow (seed 16: w1 = 23 s)
    jct = {bb: simulate(spec, Scripted(bb), Cluster(1, 2), RestartModel.parse("slurm"), seed=16, applications=apps).jobs[0].jct
           for bb in (False, True)}
    before = (60 - 5 - w1) * 100.0
    assert jct[False] == pytest.approx(60 + w2 + 15 + (60000.0 - before) / 50.0)
    assert jct[True] == pytest.approx(60 + w2 + 15 + (60000.0 - before - 100.0 * w2) / 50.0)
    assert jct[False] - jct[True] == pytest.approx(2 * w2)


def test_a_grow_abandoned_while_it_waits_leaves_the_job_at_its_old_size() -> None:
    """Grow at 60 and shrink back at 120 while the grow still waits (seed 16's second wait, 77 s, is
    long enough): the job never paused, so it ends as if it had trained at 100/s throughout, after its
    first start."""
    apps = {"toy": toy(work=60000.0)}
    spec = [JobSpec("a", 0.0, "toy", num_replicas=1, batch_size=10)]
    rng = np.random.default_rng(16)
    w1, w2 = rng.exponential(60.0), rng.exponential(60.0)

    class GrowThenBack(Scripted):
        def decide(self, now, jobs, cluster, restart):  # type: ignore[no-untyped-def]
            return {job.name: 2 if 60 <= now < 120 else 1 for job in jobs}

    assert w2 > 60  # still waiting at 120
    result = simulate(spec, GrowThenBack(True), Cluster(1, 2), RestartModel.parse("slurm"), seed=16, applications=apps)
    assert result.jobs[0].jct == pytest.approx(5 + w1 + 60000.0 / 100.0)


@pytest.mark.parametrize("as_daemon", ["hpcsched-nostop", "site"])
def test_hpcsched_as_the_daemon_acts_never_stops_a_running_job(as_daemon: str) -> None:
    """Single-GPU jobs of hours (so no resize is possible) arriving at a 2-GPU cluster faster
    than they end: the allocator stops running jobs for newcomers that never ran, and each resume
    is a restart. ``hpcsched-nostop`` and the site policy (the coordinator never stops a job, all
    jobs elastic here) keep every running job to its end, within the cluster."""
    apps = {"toy": toy(work=1_000_000.0, epochs=3, max_gpus=1)}
    jobs = [JobSpec(f"j{i}", 300.0 * i, "toy", num_replicas=1, batch_size=10) for i in range(4)]
    stops = simulate(jobs, "hpcsched", Cluster(1, 2), RestartModel.parse("30"), applications=apps)
    kept = simulate(jobs, as_daemon, Cluster(1, 2), RestartModel.parse("30"), applications=apps)
    assert stops.restarts > 0
    assert kept.restarts == 0
    assert max(used for _, used in kept.usage) <= 2
