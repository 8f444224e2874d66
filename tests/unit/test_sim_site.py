"""Site mode in the simulator: owners, the good-citizen rules, the all-rigid baseline, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_simulator_cli import toy_data

from hpcsched.allocator import Cluster
from hpcsched.cli.simulate import simulate as simulate_cli
from hpcsched.errors import ValidationError
from hpcsched.models import BatchLimits, ThroughputParams
from hpcsched.simulator import Application, JobSpec, RestartModel, simulate
from hpcsched.simulator.fairness import compare_site, jct_ratio
from hpcsched.simulator.jobs import JobView, ReplayJob
from hpcsched.simulator.knowledge import observe
from hpcsched.simulator.owners import all_elastic, all_rigid, assign_owners
from hpcsched.simulator.policies import POLICY_NAMES, SitePolicy, make_policy

RESTART = RestartModel.parse("30")


def scalable(work: float = 600000.0) -> Application:
    """0.1 s per step on any number of GPUs (no all-reduce cost) and noisy gradients, so a batch
    of 10 per GPU is worth nearly all of it: a job runs about g times faster on g GPUs (up to 4)."""
    return Application(
        name="toy",
        params=ThroughputParams(alpha_c=0.1, beta_c=0.0, alpha_n=0.0, beta_n=0.0, alpha_r=0.0, beta_r=0.0, gamma=1.0),
        limits=BatchLimits(min_global_bsz=10, max_global_bsz=40, max_local_bsz=10),
        epoch_ends=np.array([work]),
        grad_batch_sizes=np.array([10.0, 40.0]),
        grad_sqr=np.ones((2, 1)),
        grad_var=np.full((2, 1), 1e4),
    )


APPS = {"toy": scalable()}


def spec(name: str, at: float, gpus: int, rigid: bool, user: str = "u1") -> JobSpec:
    return JobSpec(name, at, "toy", num_replicas=gpus, batch_size=10 * gpus, user=user, rigid=rigid)


def running(policy: SitePolicy, job_spec: JobSpec, gpus: int, executed_s: float = 0.0) -> JobView:
    """What the policy sees of a job that has run on ``gpus`` GPUs (0: one that waits) for
    ``executed_s`` of its time limit."""
    job = ReplayJob(spec=job_spec, app=APPS["toy"], total_work=600000.0, gpus_per_node=4, declared_work=600000.0,
                    executed_s=executed_s)
    if gpus:
        job.gpus, job.largest, job.starts = gpus, gpus, 1
        job.config = policy.config(observe(job), gpus)
        job.report()
    return observe(job)


def test_owners_are_a_seeded_draw_with_the_asked_share_of_rigid_jobs() -> None:
    workload = [spec(f"j{i}", float(i), 1, rigid=False, user="") for i in range(40)]
    first, again = assign_owners(workload, 4, 0.5, seed=3), assign_owners(workload, 4, 0.5, seed=3)
    assert first == again
    assert sum(job.rigid for job in first) == 20
    assert {job.user for job in first} == {"user1", "user2", "user3", "user4"}
    assert assign_owners(workload, 4, 0.5, seed=4) != first
    assert all(job.rigid for job in all_rigid(first)) and [j.user for j in all_rigid(first)] == [j.user for j in first]


BAD_OWNERS = [(0, 0.5, "--users"), (2, 1.5, "--rigid-share"), (2, -0.1, "--rigid-share")]


@pytest.mark.parametrize(("users", "share", "option"), BAD_OWNERS)
def test_owners_refuse_bad_counts_naming_the_option(users: int, share: float, option: str) -> None:
    with pytest.raises(ValidationError, match=option):
        assign_owners([spec("a", 0.0, 1, rigid=False)], users, share, seed=0)


def test_a_rigid_job_starts_on_arrival_when_shrinking_elastic_jobs_makes_room() -> None:
    """The elastic job holds all 4 GPUs when a 2-GPU plain job arrives: it shrinks and the plain
    job starts then. With the first job rigid as well, the plain job waits for it to end."""
    workload = [spec("e", 0.0, 4, rigid=False), spec("r", 300.0, 2, rigid=True)]
    mixed = {job.name: job for job in simulate(workload, "site", Cluster(1, 4), RESTART, applications=APPS, on_arrival=True).jobs}
    assert mixed["e"].allocated_gpu_s > 2 * mixed["e"].jct  # it did grow beyond 2 GPUs
    assert mixed["r"].first_start == pytest.approx(300.0)
    alone = simulate(all_rigid(workload), "site", Cluster(1, 4), RESTART, applications=APPS, on_arrival=True)
    plain = {job.name: job for job in alone.jobs}
    assert plain["r"].first_start == pytest.approx(plain["e"].completion_time, abs=1e-3)


def test_elastic_jobs_do_not_grow_nor_start_while_a_rigid_job_waits() -> None:
    """4 GPUs: a plain job on 2, an elastic job on 1, one idle. A plain 3-GPU job waiting for
    the first keeps the idle GPU from the elastic job and from a waiting elastic job; without it
    the elastic jobs take the idle GPU."""
    policy = SitePolicy()
    plain, grower = running(policy, spec("p", 0.0, 2, rigid=True), 2), running(policy, spec("e", 0.0, 1, rigid=False), 1)
    late = running(policy, spec("late", 50.0, 1, rigid=False), 0)
    wide = running(policy, spec("w", 10.0, 3, rigid=True), 0)
    targets = policy.decide(600.0, [plain, grower, wide, late], Cluster(1, 4), RESTART)
    assert targets.get("w", 0) == 0 and targets["e"] == 1 and targets.get("late", 0) == 0
    free = policy.decide(600.0, [plain, grower, late], Cluster(1, 4), RESTART)
    assert free["e"] + free.get("late", 0) == 2


def test_site_with_every_job_rigid_is_its_own_baseline() -> None:
    workload = all_rigid(assign_owners([spec(f"j{i}", 40.0 * i, 1 + i % 3, rigid=True) for i in range(6)], 2, 1.0, seed=0))
    comparison = compare_site(workload, Cluster(1, 4), RESTART, seed=0, applications=APPS)
    metrics = comparison.metrics()
    assert metrics["rigid_jct_ratio"] == pytest.approx(1.0) and metrics["rigid_wait_ratio"] == pytest.approx(1.0)
    assert comparison.mixed_user_ftf == comparison.baseline_user_ftf
    assert set(comparison.mixed_user_ftf) == {job.user for job in workload}


def test_plain_jobs_start_and_finish_no_later_beside_elastic_jobs_than_all_plain() -> None:
    workload = assign_owners([spec(f"j{i}", 100.0 * i, 2, rigid=False) for i in range(8)], 2, 0.5, seed=1)
    metrics = compare_site(workload, Cluster(1, 4), RESTART, seed=0, applications=APPS).metrics()
    assert metrics["rigid_wait_ratio"] <= 1.0
    assert metrics["rigid_jct_ratio"] <= 1.0


def test_the_upper_bound_is_told_the_truth_resizes_for_free_and_keeps_the_same_baseline() -> None:
    workload = assign_owners([spec(f"j{i}", 100.0 * i, 2, rigid=False) for i in range(8)], 2, 0.5, seed=1)
    plain = compare_site(workload, Cluster(1, 4), RESTART, seed=0, applications=APPS)
    bound = compare_site(workload, Cluster(1, 4), RESTART, seed=0, applications=APPS, upper_bound=True)
    assert bound.mixed.policy == "site-oracle" and bound.mixed.restart_cost != plain.mixed.restart_cost
    assert bound.baseline == plain.baseline and bound.baseline_user_ftf == plain.baseline_user_ftf
    assert any(job.restart_gpu_s > 0 for job in plain.mixed.jobs)
    assert all(job.restart_gpu_s == 0 for job in bound.mixed.jobs)
    assert set(bound.mixed_user_ftf) == set(plain.mixed_user_ftf)


def test_the_oracle_site_policy_is_a_labelled_bound_never_a_default_comparison() -> None:
    policy = make_policy("site-oracle")
    assert isinstance(policy, SitePolicy) and policy.oracle and policy.name == "site-oracle"
    assert not make_policy("site").oracle
    assert "site-oracle" not in POLICY_NAMES and "site" not in POLICY_NAMES


def test_the_none_rigid_reference_runs_the_same_jobs_and_users_all_elastic() -> None:
    workload = assign_owners([spec(f"j{i}", 100.0 * i, 2, rigid=False) for i in range(8)], 2, 0.5, seed=1)
    everyone = all_elastic(workload)
    assert [(job.name, job.user) for job in everyone] == [(job.name, job.user) for job in workload]
    free = simulate(everyone, "site", Cluster(1, 4), RESTART, seed=0, applications=APPS)
    baseline = simulate(all_rigid(workload), "site", Cluster(1, 4), RESTART, seed=0, applications=APPS)
    assert not any(job.rigid for job in free.jobs) and all(job.rigid for job in baseline.jobs)
    names = [job.name for job in workload if job.rigid]
    by_name = {job.name: job.jct for job in free.jobs}, {job.name: job.jct for job in baseline.jobs}
    expected = np.mean([by_name[0][n] for n in names]) / np.mean([by_name[1][n] for n in names])
    assert jct_ratio(free, baseline, names) == pytest.approx(expected)


def test_cli_site_policy_with_users_and_rigid_jobs(tmp_path: Path) -> None:
    workload = tmp_path / "w.csv"
    workload.write_text("name,time,application,num_replicas,batch_size\nt-0,0,toy,2,32\nt-1,30,toy,1,16\nt-2,200,toy,4,64\n")
    args = ["--workload", str(workload), "--data", str(toy_data(tmp_path)), "--policy", "site", "--json"]
    result = CliRunner().invoke(simulate_cli, [*args, "--users", "2", "--rigid-share", "0.5"])
    assert result.exit_code == 0, result.output
    assert '"policy": "site"' in result.output


@pytest.mark.parametrize(("option", "value"), [("--users", "0"), ("--rigid-share", "2"), ("--rigid-share", "half")])
def test_cli_refuses_bad_site_options_with_status_2(tmp_path: Path, option: str, value: str) -> None:
    result = CliRunner().invoke(simulate_cli, ["--workload", "workload-1", "--policy", "site", option, value])
    assert result.exit_code == 2
    assert option in result.output


@pytest.mark.parametrize(("blocked_needs", "grows_to"), [(6, 1), (5, 2)])
def test_while_a_plain_job_is_blocked_elastic_jobs_grow_only_where_the_whole_allocation_fits_in_the_spare(
        blocked_needs: int, grows_to: int) -> None:
    """8 GPUs: a plain job on 4, an elastic job on 1 (3 idle), a plain job blocked behind the first
    (at its end 7 GPUs are free). Needing 6, it leaves 1 to spare: the elastic job's grow to 2
    would need 2 beside its 1 (the hand-over of its own GPUs waits while the blocked job is served
    first), so it stays at 1. Needing 5, it leaves 2: the elastic job grows to 2 and no further.
    Once the blocked job is gone, the elastic job takes every idle GPU."""
    policy = SitePolicy()
    plain = running(policy, spec("p", 0.0, 4, rigid=True), 4)
    grower = running(policy, spec("e", 0.0, 4, rigid=False), 1, executed_s=600.0)
    wide = running(policy, spec("w", 10.0, blocked_needs, rigid=True), 0)
    targets = policy.decide(600.0, [plain, grower, wide], Cluster(2, 4), RESTART)
    assert targets.get("w", 0) == 0
    assert targets["e"] == grows_to
    assert policy.decide(600.0, [plain, grower], Cluster(2, 4), RESTART)["e"] == 4


def test_a_waiting_elastic_job_backfills_at_its_minimum_beside_a_blocked_plain_job() -> None:
    """4 GPUs: a plain job on 2 (time limit ahead), a plain 3-GPU job blocked behind it (at the
    first one's end it has 4 GPUs, one to spare). An elastic job submitted for 4 GPUs queues at
    its minimum and takes the spare GPU (backfill); a second one would delay the blocked job and
    waits. Neither grows while the plain job is blocked."""
    policy = SitePolicy()
    plain = running(policy, spec("p", 0.0, 2, rigid=True), 2)
    wide = running(policy, spec("w", 10.0, 3, rigid=True), 0)
    first, second = (running(policy, spec(name, at, 4, rigid=False), 0) for name, at in (("e1", 20.0), ("e2", 30.0)))
    targets = policy.decide(600.0, [plain, wide, first, second], Cluster(1, 4), RESTART)
    assert targets.get("w", 0) == 0
    assert targets["e1"] == 1
    assert targets.get("e2", 0) == 0


def test_a_blocked_plain_jobs_reservation_counts_on_elastic_minimums_coming_back() -> None:
    """8 GPUs: a plain job on 4, an elastic job on 1 (3 idle), a plain 8-GPU job blocked: it can
    start only once both give their GPUs back, the elastic one its minimum at the end of its run.
    A newly arrived elastic job would hold a GPU past that and must not start (without the
    elastic minimum in the reservation the blocked job would look as if it could never start, and
    anything could backfill)."""
    policy = SitePolicy()
    plain = running(policy, spec("p", 0.0, 4, rigid=True), 4)
    small = running(policy, spec("e", 0.0, 1, rigid=False), 1, executed_s=600.0)
    whole = running(policy, spec("w", 10.0, 8, rigid=True), 0)
    late = running(policy, spec("late", 20.0, 1, rigid=False), 0)
    targets = policy.decide(600.0, [plain, small, whole, late], Cluster(2, 4), RESTART)
    assert targets.get("w", 0) == 0 and targets["e"] == 1
    assert targets.get("late", 0) == 0
