"""Site mode's pure decisions: the good-citizen rules and the pass that sizes every user's jobs."""

from __future__ import annotations

import dataclasses

import pytest
from site_helpers import partition, record, reported

from hpcsched.jobs.model import JobState
from hpcsched.site.citizen import Partition, room
from hpcsched.site.decide import decide

R, P = JobState.RUNNING, JobState.PENDING


def test_a_plain_job_waiting_for_nodes_that_elastic_jobs_hold_makes_them_shrink() -> None:
    # A's two elastic jobs hold all four nodes; B's plain job waits for two.
    queue = [record(1, 1001, R, 2, "n[1-2]"), record(2, 1001, R, 2, "n[3-4]"), record(3, 1002, P, 2, reason="Resources")]
    nodes = partition({f"n{i}": "alloc" for i in range(1, 5)}, 4)
    plan = decide({"p": nodes}, queue, {1: reported(1, 1001), 2: reported(2, 1001)})
    sizes = {d.slurm_job_id: (d.action, d.target) for d in plan.decisions}
    assert sizes == {1: ("shrink", 1), 2: ("shrink", 1)}
    assert plan.rooms[0].served == (3,) and plan.rooms[0].capacity == 2
    assert all("Slurm job(s) 3" in d.reason for d in plan.decisions)


def test_no_shrink_for_a_job_that_shrinking_would_not_start_and_no_grow_while_it_waits() -> None:
    # Another user's rigid job holds two nodes (no time limit); the elastic job holds one above its
    # minimum of 1, and one node is idle. The waiting job needs four: even shrinking everything
    # leaves it waiting, and it needs the idle node when it starts.
    queue = [record(1, 1001, R, 2, "n[1-2]"), record(5, 1003, R, 2, "n[3-4]"), record(3, 1002, P, 4, reason="Resources")]
    nodes = partition({"n1": "alloc", "n2": "alloc", "n3": "alloc", "n4": "alloc"}, 5)
    plan = decide({"p": nodes}, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert d.action == "keep" and d.target == 2
    assert plan.rooms[0].blocked == 3 and plan.rooms[0].kept == 1
    assert "kept for Slurm job 3" in d.reason


@pytest.mark.parametrize(("plain_ends", "kept", "grown_to"), [(1000.0, 2, 2), (None, 4, 1)])
def test_while_a_job_is_blocked_elastic_jobs_grow_only_into_what_its_planned_start_leaves_spare(
        plain_ends: float | None, kept: int, grown_to: int) -> None:
    # Eight nodes: B's plain job on three (ending at its time limit), A's elastic job on one, four
    # idle. C's plain job needs five: it is blocked until B's job ends, and then has seven, two to
    # spare. A's job may grow into those two (its whole 2-node allocation fits there beside its
    # old one); the other two idle nodes are kept for C's job. If B's job had no end time, C's job
    # could not count on it: every idle node is kept.
    plain = dataclasses.replace(record(5, 1003, R, 3, "n[1-3]"), limit_end=plain_ends)
    queue = [plain, record(1, 1001, R, 1, "n4"), record(3, 1002, P, 5, reason="Resources")]
    nodes = partition({"n1": "alloc", "n2": "alloc", "n3": "alloc", "n4": "alloc"}, 8)
    plan = decide({"p": nodes}, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert plan.rooms[0].blocked == 3 and plan.rooms[0].kept == kept
    assert d.target == grown_to and d.action == ("grow" if grown_to > 1 else "keep")


def test_while_a_job_is_blocked_a_grow_that_would_not_fit_whole_beside_the_old_allocation_is_not_offered() -> None:
    # Six nodes: B's plain job on two (ending at 1000), A's elastic job on one, three idle; C's job
    # needs four and, at B's end, has one node to spare. Growing A to 2 needs a 2-node allocation:
    # the spare node plus A's own, which A could hand over only if nobody Slurm serves first
    # waited. C does, so the grow could not start: none is offered (before: grow to 2, which then
    # waited in the queue with A counted as busy, never shrunk, for up to 30 minutes).
    plain = dataclasses.replace(record(5, 1003, R, 2, "n[1-2]"), limit_end=1000.0)
    queue = [plain, record(1, 1001, R, 1, "n3"), record(3, 1002, P, 4, reason="Resources")]
    plan = decide({"p": partition({"n1": "alloc", "n2": "alloc", "n3": "alloc"}, 6)}, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert plan.rooms[0].blocked == 3 and plan.rooms[0].kept == 2
    assert (d.action, d.target) == ("keep", 1)


def test_nodes_slurms_backfill_plans_for_the_blocked_job_are_idle_and_kept_for_it() -> None:
    # As seen on the local cluster (Slurm 22.05): wide's 8 nodes, B's plain job on four (10-minute
    # limit), A's elastic job on one, and C's plain job waiting for six. Slurm's backfill marks two
    # of the three idle nodes PLANNED for C (bob's four and those two); the third is spare, and
    # A's job's room includes it (capacity 2), but a 2-node allocation would not fit whole beside its
    # one: no grow is offered. Counting the planned nodes as others' would keep the spare one too.
    queue = [dataclasses.replace(record(5, 1003, R, 4, "n[1-4]"), limit_end=600.0),
             dataclasses.replace(record(1, 1001, R, 1, "n7"), limit_end=3e7), record(3, 1002, P, 6, reason="Resources")]
    busy = {"n1": "mix", "n2": "mix", "n3": "mix", "n4": "mix", "n5": "plnd", "n6": "plnd", "n7": "mix"}
    plan = decide({"p": partition(busy, 8)}, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert plan.rooms[0].blocked == 3 and plan.rooms[0].kept == 2 and plan.rooms[0].capacity == 2
    assert (d.action, d.target) == ("keep", 1)


def test_a_blocked_job_counts_an_elastic_job_once_what_it_holds_above_its_minimum_and_then_its_minimum() -> None:
    # Five nodes: B's plain job on n1 (ends at 1000), A's elastic job on n2-n3 (minimum 1, ends at
    # 500), two idle. C's plain job needs four: two idle plus A's one above its minimum is three;
    # at 500 A's minimum comes back and C's job can start with none to spare, so both idle nodes
    # are kept for it. (Counting A's two nodes at its end as well would count one twice.)
    queue = [dataclasses.replace(record(5, 1003, R, 1, "n1"), limit_end=1000.0),
             dataclasses.replace(record(1, 1001, R, 2, "n[2-3]"), limit_end=500.0),
             record(3, 1002, P, 4, reason="Resources")]
    plan = decide({"p": partition({"n1": "alloc", "n2": "alloc", "n3": "alloc"}, 5)}, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert plan.rooms[0].blocked == 3 and plan.rooms[0].kept == 2
    assert d.target <= 2 and d.action != "grow"


def test_elastic_jobs_grow_into_idle_nodes_nobody_waits_for() -> None:
    queue = [record(1, 1001, R, 1, "n1")]
    plan = decide({"p": partition({"n1": "alloc"}, 4)}, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert d.action == "grow" and d.target > 1


def test_a_plain_job_slurm_has_not_looked_at_yet_keeps_the_idle_node_it_would_start_on() -> None:
    # Submitted a moment ago: Slurm has not run its scheduler since, so its reason is still None.
    # Its next pass would start the job on the idle node; the elastic job must not grow into it.
    queue = [record(1, 1001, R, 1, "n1"), record(3, 1002, P, 1, reason="None")]
    plan = decide({"p": partition({"n1": "alloc"}, 2)}, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert d.action == "keep" and d.target == 1
    assert plan.rooms[0].served == (3,)


def test_jobs_waiting_for_a_dependency_or_a_limit_reserve_nothing() -> None:
    queue = [record(1, 1001, R, 4, "n[1-4]"), record(3, 1002, P, 2, reason="Dependency"),
             record(4, 1002, P, 2, reason="QOSMaxNodePerUserLimit")]
    rm = room(partition({f"n{i}": "alloc" for i in range(1, 5)}, 4), queue, {1: (1, 4)})
    assert rm.reserved == 0 and rm.blocked is None and rm.capacity == 4


def test_waiting_jobs_are_served_in_slurms_priority_order() -> None:
    queue = [record(1, 1001, R, 4, "n[1-4]"), record(3, 1002, P, 3, reason="Priority", priority=10),
             record(4, 1003, P, 2, reason="Resources", priority=50)]
    rm = room(partition({f"n{i}": "alloc" for i in range(1, 5)}, 4), queue, {1: (1, 4)})
    assert rm.served == (4,) and rm.blocked == 3  # 2 nodes for job 4 first; then 3 more do not fit
    assert rm.capacity == 2


def test_a_user_with_four_jobs_gets_about_the_share_of_a_user_with_one() -> None:
    queue = [record(i, 1001, P, 0, reason="Resources", submit=i) for i in (1, 2, 3, 4)]
    queue.append(record(9, 1003, P, 0, reason="Resources", submit=9))
    reports = {i: reported(i, 1001) for i in (1, 2, 3, 4)} | {9: reported(9, 1003)}
    plan = decide({"p": partition({}, 8)}, queue, reports)
    per_user: dict[str, int] = {}
    for d in plan.decisions:
        per_user[d.user] = per_user.get(d.user, 0) + d.target
    assert sum(per_user.values()) <= 8
    assert abs(per_user["u1001"] - per_user["u1003"]) <= 2, per_user


def test_a_job_with_a_resize_under_way_keeps_its_size_and_its_nodes() -> None:
    queue = [record(1, 1001, R, 3, "n[1-3]"), record(2, 1002, R, 1, "n4"), record(3, 1004, P, 1, reason="Resources")]
    nodes = partition({f"n{i}": "alloc" for i in range(1, 5)}, 4)
    plan = decide({"p": nodes}, queue, {1: reported(1, 1001), 2: reported(2, 1002)}, busy={1: 3})
    by_id = {d.slurm_job_id: d for d in plan.decisions}
    assert by_id[1].action == "busy" and by_id[1].target == 3
    assert by_id[2].target <= 1  # only what is left beside the busy job and the reservation


def nodes_named(name: str, states: dict[str, str]) -> Partition:
    return Partition(name, states)


def test_a_job_of_a_partition_that_shares_no_node_is_not_moved_by_it() -> None:
    queue = [record(1, 1001, R, 2, "n[1-2]", partition="a"), record(3, 1002, P, 2, reason="Resources", partition="b")]
    parts = {"a": nodes_named("a", {"n1": "alloc", "n2": "alloc"}), "b": nodes_named("b", {"m1": "alloc", "m2": "alloc"})}
    plan = decide(parts, queue, {1: reported(1, 1001)})
    (d,) = plan.decisions
    assert d.action == "keep" and d.target == 2
    assert plan.rooms[0].reserved == 0 and plan.rooms[0].blocked is None


def test_a_plain_job_waiting_in_a_partition_over_the_same_nodes_makes_elastic_jobs_shrink() -> None:
    # "short" spans the same four nodes as "gpu"; A's elastic jobs in gpu hold all of them.
    alloc = {f"n{i}": "alloc" for i in range(1, 5)}
    parts = {"gpu": nodes_named("gpu", alloc), "short": nodes_named("short", dict(alloc))}
    queue = [record(1, 1001, R, 2, "n[1-2]", partition="gpu"), record(2, 1001, R, 2, "n[3-4]", partition="gpu"),
             record(3, 1002, P, 2, reason="Resources", partition="short")]
    plan = decide(parts, queue, {1: reported(1, 1001), 2: reported(2, 1001)})
    assert {d.slurm_job_id: (d.action, d.target) for d in plan.decisions} == {1: ("shrink", 1), 2: ("shrink", 1)}
    assert plan.rooms[0].served == (3,) and all("Slurm job(s) 3" in d.reason for d in plan.decisions)
    # A job waiting in a list of partitions ("short,other") counts as well.
    listed = [*queue[:2], dataclasses.replace(queue[2], partition="short,other")]
    plan = decide(parts, listed, {1: reported(1, 1001), 2: reported(2, 1001)})
    assert {d.target for d in plan.decisions} == {1}


def test_a_job_waiting_in_a_partly_shared_partition_takes_its_own_idle_nodes_first() -> None:
    # gpu = n1-n4, held by an elastic job; big = n3-n6, of which n5 and n6 are idle.
    parts = {"gpu": nodes_named("gpu", {f"n{i}": "alloc" for i in range(1, 5)}),
             "big": nodes_named("big", {"n3": "alloc", "n4": "alloc", "n5": "idle", "n6": "idle"})}
    elastic = record(1, 1001, R, 4, "n[1-4]", partition="gpu")
    two = decide(parts, [elastic, record(3, 1002, P, 2, reason="Resources", partition="big")], {1: reported(1, 1001)})
    (d,) = two.decisions
    assert d.action != "shrink" and two.rooms[0].reserved == 0, "two idle nodes of its own start it"
    three = decide(parts, [elastic, record(3, 1002, P, 3, reason="Resources", partition="big")], {1: reported(1, 1001)})
    (d,) = three.decisions
    assert (d.action, d.target) == ("shrink", 3), "one shared node more"
    five = decide(parts, [elastic, record(3, 1002, P, 5, reason="Resources", partition="big")], {1: reported(1, 1001)})
    (d,) = five.decisions
    assert d.action == "keep" and five.rooms[0].blocked == 3, "more than big has: it blocks, nothing shrinks"


def test_a_grow_of_an_elastic_job_of_the_other_partition_makes_nobody_shrink() -> None:
    alloc = {f"n{i}": "alloc" for i in range(1, 5)}
    parts = {"gpu": nodes_named("gpu", alloc), "short": nodes_named("short", dict(alloc))}
    grow = dataclasses.replace(record(3, 1002, P, 2, reason="Resources", partition="short"), comment="hpcsched:s1:7:a2")
    queue = [record(1, 1001, R, 2, "n[1-2]", partition="gpu"), record(2, 1001, R, 2, "n[3-4]", partition="gpu"), grow]
    plan = decide(parts, queue, {1: reported(1, 1001), 2: reported(2, 1001)})
    assert {d.action for d in plan.decisions} == {"keep"}, plan.decisions


def test_partitions_over_the_same_idle_nodes_do_not_both_grow_into_them() -> None:
    idle = {f"n{i}": "idle" for i in range(1, 5)} | {"n1": "alloc", "n2": "alloc"}
    parts = {"a": nodes_named("a", dict(idle)), "b": nodes_named("b", dict(idle))}
    queue = [record(1, 1001, R, 1, "n1", partition="a"), record(2, 1002, R, 1, "n2", partition="b")]
    plan = decide(parts, queue, {1: reported(1, 1001), 2: reported(2, 1002)})
    grows = sum(d.target - d.current for d in plan.decisions)
    assert 0 < grows <= 2, plan.decisions  # two idle nodes between them


def test_a_job_one_partition_makes_room_for_is_not_made_room_for_twice() -> None:
    alloc = {f"n{i}": "alloc" for i in range(1, 5)}
    parts = {"a": nodes_named("a", {"n1": "alloc", "n2": "alloc"}), "b": nodes_named("b", {"n3": "alloc", "n4": "alloc"}),
             "all": nodes_named("all", alloc)}
    queue = [record(1, 1001, R, 2, "n[1-2]", partition="a"), record(2, 1003, R, 2, "n[3-4]", partition="b"),
             record(3, 1002, P, 1, reason="Resources", partition="all")]
    plan = decide(parts, queue, {1: reported(1, 1001), 2: reported(2, 1003)})
    shrinks = [d for d in plan.decisions if d.action == "shrink"]
    assert len(shrinks) == 1 and shrinks[0].target == 1, plan.decisions


def test_reports_of_jobs_slurm_no_longer_runs_are_ignored() -> None:
    queue = [record(1, 1001, JobState.COMPLETED, 2)]
    plan = decide({"p": partition({}, 4)}, queue, {1: reported(1, 1001)})
    assert plan.decisions == ()


def test_a_job_not_measured_yet_keeps_its_size_unless_someone_waits_for_its_nodes() -> None:
    full = partition({f"n{i}": "alloc" for i in range(1, 4)}, 3)
    fresh = dataclasses.replace(reported(1, 1001, max_nodes=3), measured=False)
    alone = decide({"p": full}, [record(1, 1001, R, 3, "n[1-3]")], {1: fresh})
    assert [(d.action, d.target) for d in alone.decisions] == [("keep", 3)]
    waited = decide({"p": full}, [record(1, 1001, R, 3, "n[1-3]"), record(2, 1002, P, 2, reason="Resources")], {1: fresh})
    (d,) = waited.decisions
    assert (d.action, d.target) == ("shrink", 1) and "Slurm job(s) 2" in d.reason


def test_a_job_measured_at_one_size_gives_up_only_the_nodes_others_need() -> None:
    # A model fitted to one node count may predict that fewer nodes are as fast: the allocator
    # would shrink the job and leave its nodes idle for nobody.
    from hpcsched.allocator import ElasticJob, GoodputModel, RestartCost
    from hpcsched.daemon.rebalance_plan import FLAT_NOISE
    from hpcsched.models.goodput import BatchLimits
    from hpcsched.models.throughput import Observation
    from hpcsched.models.throughput_fit import ThroughputPrior, fit

    # a prior that puts the all-reduce across nodes at twice the step: more nodes look no faster;
    # a restart of 1 s, so that the few percent one node gains pays for it within the horizon
    gloomy = ThroughputPrior(compute_overhead=0.2, alpha_r=0.5, beta_r=0.1, alpha_n=2.0, beta_n=0.1)
    guess = GoodputModel(fit([Observation(1, 1, 1, 0, step_time=1.0)], gloomy), FLAT_NOISE, BatchLimits(1, 3, 1))
    view = ElasticJob(key="1", model=guess, min_gpus=1, max_gpus=3, current_gpus=3, remaining_work=1800.0, age_s=30,
                      time_in_state_s=30, restart=RestartCost(0, 1, 0))
    rep = dataclasses.replace(reported(1, 1001, max_nodes=3), view=view)
    full = partition({f"n{i}": "alloc" for i in range(1, 4)}, 3)
    running = [record(1, 1001, R, 3, "n[1-3]")]
    assert [d.target for d in decide({"p": full}, running, {1: rep}).decisions] == [1], "measured at two sizes: it shrinks"
    once = dataclasses.replace(rep, sizes_seen=1)
    assert [(d.action, d.target) for d in decide({"p": full}, running, {1: once}).decisions] == [("keep", 3)]
    waited = decide({"p": full}, [*running, record(2, 1002, P, 2, reason="Resources")], {1: once})
    assert [(d.action, d.target) for d in waited.decisions] == [("shrink", 1)]
