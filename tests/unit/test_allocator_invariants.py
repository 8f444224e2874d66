"""Property tests of the cluster allocator: capacity, ranges, limits, restart pricing, starvation."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcsched.allocator import HPCSCHED, POLLUX, Allocation, Cluster, ElasticJob, GoodputModel, Limits, RestartCost, allocate
from hpcsched.allocator.allocate import calm
from hpcsched.allocator.placement import NodeLedger
from hpcsched.models import BatchLimits, GradientNoise, ThroughputParams

MODELS = (
    # scales well (compute-heavy, cheap all-reduce, large noise scale)
    GoodputModel(ThroughputParams(0.05, 0.002, 0.08, 0.002, 0.02, 0.001, 1.5), GradientNoise(1.0, 4000.0),
                 BatchLimits(64, 4096, 256, 3)),
    # scales poorly (expensive network, small noise scale)
    GoodputModel(ThroughputParams(0.01, 0.0002, 0.3, 0.01, 0.05, 0.005, 1.0), GradientNoise(1.0, 50.0),
                 BatchLimits(32, 1024, 128, 1)),
    # in between
    GoodputModel(ThroughputParams(0.02, 0.001, 0.1, 0.004, 0.03, 0.002, 2.0), GradientNoise(1.0, 800.0),
                 BatchLimits(16, 2048, 64, 7)),
)
Scenario = tuple[Cluster, list[ElasticJob], Limits]
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    nodes = draw(st.integers(1, 8))
    per_node = draw(st.integers(1, 4))
    down = draw(st.frozensets(st.integers(0, nodes - 1), max_size=nodes // 3))
    foreign = draw(st.dictionaries(st.integers(0, nodes - 1), st.integers(0, per_node), max_size=nodes // 2))
    return Cluster(nodes, per_node, unavailable_nodes=down, foreign_gpus=foreign)


def packed_sizes(cluster: Cluster, wanted: Sequence[int]) -> list[int]:
    """Current sizes that really fit the cluster (as running jobs' sizes must)."""
    ledger = NodeLedger(cluster.free_gpus(), cluster.gpus_per_node)
    return [size if size and ledger.place(i, size) else 0 for i, size in enumerate(wanted)]


@st.composite
def scenarios(draw: st.DrawFn, restart_s: float | None = None) -> Scenario:
    cluster = draw(clusters())
    count = draw(st.integers(1, 10))
    per_node = cluster.gpus_per_node
    whole = [draw(st.booleans()) and per_node > 1 for _ in range(count)]
    mins = [draw(st.integers(1, 3)) * (per_node if w else 1) for w in whole]
    maxes = [m + draw(st.integers(0, 12)) * (per_node if w else 1) for m, w in zip(mins, whole, strict=True)]
    wanted = [draw(st.sampled_from([0, lo, hi, (lo + hi) // 2])) for lo, hi in zip(mins, maxes, strict=True)]
    wanted = [w - w % per_node if whole[i] else w for i, w in enumerate(wanted)]
    current = packed_sizes(cluster, wanted)
    limits = Limits(
        max_nodes_per_job=draw(st.one_of(st.none(), st.integers(1, 6))),
        max_nodes_per_account=draw(st.one_of(st.none(), st.integers(1, 8))),
    )
    jobs = [
        ElasticJob(
            key=f"job{i}",
            model=draw(st.sampled_from(MODELS)),
            min_gpus=mins[i],
            max_gpus=maxes[i],
            current_gpus=current[i],
            remaining_work=draw(st.sampled_from([1e3, 1e5, 1e7, math.inf])),
            age_s=draw(st.floats(0, 1e5)),
            time_in_state_s=draw(st.floats(0, 2e4)),
            time_at_size_s=draw(st.floats(0, 2e4)),
            restarts=draw(st.integers(0, 5)),
            restart=RestartCost(queue_wait_s=draw(st.floats(0, 300))) if restart_s is None else RestartCost.fixed(restart_s),
            account=draw(st.sampled_from(["a", "b"])),
            whole_nodes=whole[i],
            climbing=draw(st.booleans()) and current[i] > 0,
        )
        for i in range(count)
    ]
    return cluster, jobs, limits


def check_capacity(cluster: Cluster, allocation: Allocation) -> None:
    used: Counter[int] = Counter()
    for decision in allocation.decisions:
        assert sum(g for _, g in decision.placement) == decision.target_gpus
        assert len({n for n, _ in decision.placement}) == len(decision.placement)
        assert decision.num_nodes == cluster.nodes_for(decision.target_gpus)
        assert sum(1 for _, g in decision.placement if g < cluster.gpus_per_node) <= 1
        for node, gpus in decision.placement:
            used[node] += gpus
    free = cluster.free_gpus()
    assert all(used[node] <= free[node] for node in used)


@SETTINGS
@given(scenarios(), st.sampled_from([HPCSCHED, POLLUX]))
def test_never_over_capacity_and_within_ranges_and_limits(scenario: Scenario, policy: object) -> None:
    cluster, jobs, limits = scenario
    allocation = allocate(cluster, jobs, policy, limits)  # type: ignore[arg-type]
    check_capacity(cluster, allocation)
    per_account: Counter[str] = Counter()
    for job, decision in zip(jobs, allocation.decisions, strict=True):
        assert decision.key == job.key
        target = decision.target_gpus
        assert target == 0 or job.min_gpus <= target <= job.max_gpus
        if job.whole_nodes:
            assert target % cluster.gpus_per_node == 0
        if limits.max_nodes_per_job is not None:
            assert decision.num_nodes <= limits.max_nodes_per_job
        per_account[job.account] += decision.num_nodes
        assert decision.reason
    if limits.max_nodes_per_account is not None:
        assert max(per_account.values()) <= limits.max_nodes_per_account


@SETTINGS
@given(scenarios())
def test_a_running_job_grows_only_when_the_time_saved_exceeds_its_restart_cost(scenario: Scenario) -> None:
    cluster, jobs, limits = scenario
    allocation = allocate(cluster, jobs, HPCSCHED, limits)
    quiet = calm(cluster, jobs, HPCSCHED)
    for job, decision in zip(jobs, allocation.decisions, strict=True):
        grows = job.min_gpus <= job.current_gpus < decision.target_gpus
        if grows and math.isfinite(job.remaining_work):
            assert decision.gain_s > decision.cost_s * (1.0 + HPCSCHED.grow_hysteresis(quiet, job.climbing))


@SETTINGS
@given(scenarios(restart_s=1e9))
def test_when_restarts_cost_more_than_anything_gains_nobody_running_is_resized(scenario: Scenario) -> None:
    cluster, jobs, limits = scenario
    jobs = [j for j in jobs if math.isfinite(j.remaining_work)]
    # Unforced: every running job's size is valid now, no waiting job is starving.
    node_cap = limits.max_nodes_per_job or cluster.num_nodes
    fits = [
        j for j in jobs
        if j.current_gpus == 0 or (j.min_gpus <= j.current_gpus <= j.max_gpus and cluster.nodes_for(j.current_gpus) <= node_cap)
    ]
    fits = [j for j in fits if j.current_gpus or j.time_in_state_s < HPCSCHED.starvation_s]
    accounts: Counter[str] = Counter()
    for job in fits:
        accounts[job.account] += cluster.nodes_for(job.current_gpus)
    if limits.max_nodes_per_account is not None and accounts and max(accounts.values()) > limits.max_nodes_per_account:
        return
    allocation = allocate(cluster, fits, HPCSCHED, limits)
    for job, decision in zip(fits, allocation.decisions, strict=True):
        if job.current_gpus:
            assert decision.target_gpus == job.current_gpus, decision.reason


def test_every_job_gets_its_minimum_within_a_bounded_number_of_rounds() -> None:
    """Ten jobs that never finish, each wanting 2..4 of 8 GPUs: rounds of 60 s; with
    starvation_s = 300 every job must have run within (jobs + 2) * 5 rounds."""
    policy = HPCSCHED.__class__(starvation_s=300.0)
    cluster = Cluster(2, 4)
    jobs = [
        ElasticJob(key=f"j{i}", model=MODELS[i % 3], min_gpus=2 + i % 3, max_gpus=8, remaining_work=1e12,
                   restart=RestartCost.fixed(30.0))
        for i in range(10)
    ]
    since = {j.key: 0.0 for j in jobs}
    at_size = dict(since)
    has_run: dict[str, int] = {}
    bound = (len(jobs) + 2) * 5
    for round_ in range(bound):
        now = round_ * 60.0
        view = [
            ElasticJob(key=j.key, model=j.model, min_gpus=j.min_gpus, max_gpus=j.max_gpus, current_gpus=j.current_gpus,
                       remaining_work=j.remaining_work, age_s=now, time_in_state_s=now - since[j.key],
                       time_at_size_s=now - at_size[j.key], restart=j.restart)
            for j in jobs
        ]
        allocation = allocate(cluster, view, policy)
        check_capacity(cluster, allocation)
        jobs = []
        for job, decision in zip(view, allocation.decisions, strict=True):
            if (job.current_gpus == 0) != (decision.target_gpus == 0):
                since[job.key] = now
            if job.current_gpus != decision.target_gpus:
                at_size[job.key] = now
            if decision.target_gpus:
                has_run.setdefault(job.key, round_)
            jobs.append(ElasticJob(key=job.key, model=job.model, min_gpus=job.min_gpus, max_gpus=job.max_gpus,
                                   current_gpus=decision.target_gpus, remaining_work=job.remaining_work, restart=job.restart))
    assert sorted(has_run) == sorted(j.key for j in jobs)


@pytest.mark.parametrize("policy", [HPCSCHED, POLLUX])
def test_keys_must_be_unique(policy: object) -> None:
    job = ElasticJob(key="x", model=MODELS[0], min_gpus=1, max_gpus=4)
    with pytest.raises(ValueError, match="unique"):
        allocate(Cluster(1, 4), [job, job], policy)  # type: ignore[arg-type]


def test_a_steady_stream_of_newcomers_starves_no_job_in_a_crowded_cluster() -> None:
    """A job that never ends arrives every 60 s round at a 4-GPU cluster. Each newcomer that never
    ran may preempt (least attained service) and is then protected for ``starvation_s``; the jobs
    it preempts must still come back: no wait, finished or still going after 40 rounds, is longer
    than twice ``starvation_s``. (Before the starving jobs ranked ahead of the newcomers, the first
    jobs preempted waited the whole run, 1,800 s, with ``starvation_s`` 300.)"""
    policy = dataclasses.replace(HPCSCHED, starvation_s=300.0)
    cluster, size, since, at_size, ran = Cluster(1, 4), {}, {}, {}, set()
    waits = []
    for round_ in range(40):
        now = round_ * 60.0
        key = f"j{round_}"
        size[key], since[key], at_size[key] = 0, now, now
        view = [ElasticJob(key=k, model=MODELS[0], min_gpus=1, max_gpus=4, current_gpus=size[k], remaining_work=1e12,
                           age_s=now - int(k[1:]) * 60.0, time_in_state_s=now - since[k],
                           time_at_size_s=now - at_size[k] if size[k] else math.inf, restart=RestartCost.fixed(30.0),
                           never_ran=k not in ran)
                for k in size]  # fmt: skip
        allocation = allocate(cluster, view, policy)
        check_capacity(cluster, allocation)
        for d in allocation.decisions:
            if (size[d.key] == 0) != (d.target_gpus == 0):
                if size[d.key] == 0:
                    waits.append(now - since[d.key])
                since[d.key] = now
            if size[d.key] != d.target_gpus:
                at_size[d.key] = now
            size[d.key] = d.target_gpus
            ran |= {d.key} if d.target_gpus else set()
    waits += [39 * 60.0 - since[k] for k in size if size[k] == 0]
    assert len(ran) > 4, "newcomers did preempt"
    assert max(waits) <= 2 * policy.starvation_s
