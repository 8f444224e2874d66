"""Site mode when a newcomer arrives (the passes seen on the real cluster, docs/site.md): alice's
four elastic jobs hold the partition, carol submits one. Carol must be started at her fair share,
nobody may grow past her before the allocator can judge her, and alice's grow allocations must
never count as somebody else waiting for nodes."""

from __future__ import annotations

import dataclasses

from site_helpers import partition, record, reported

from hpcsched.jobs.model import JobState
from hpcsched.site.decide import UNREPORTED_GRACE_S, Reported, decide

R, P = JobState.RUNNING, JobState.PENDING
ALICE, CAROL, MALLORY, DAVE = 1001, 1003, 1004, 1005
FULL = partition({f"n{i}": "alloc" for i in range(1, 9)}, 8)


def alice_four() -> tuple[list, dict[int, Reported]]:
    queue = [record(i, ALICE, R, 2, f"n[{2 * i - 1}-{2 * i}]") for i in (1, 2, 3, 4)]
    reports = {i: dataclasses.replace(reported(i, ALICE, max_nodes=4), store="sA", job_id=10 + i) for i in (1, 2, 3, 4)}
    return queue, reports


def tagged(r, comment: str):  # type: ignore[no-untyped-def]
    return dataclasses.replace(r, comment=comment)


def test_a_waiting_newcomer_is_started_at_her_fair_share_and_alice_shrinks_to_make_it_room() -> None:
    queue, reports = alice_four()
    queue.append(tagged(record(9, CAROL, P, 2, reason="Resources"), "hpcsched:sC:1"))
    reports[9] = dataclasses.replace(reported(9, CAROL, max_nodes=4), store="sC", job_id=1)
    plan = decide({"p": FULL}, queue, reports)
    by_id = {d.slurm_job_id: d for d in plan.decisions}
    assert (by_id[9].action, by_id[9].requested, by_id[9].target) == ("start", 2, 4)
    assert by_id[9].sizes_pending  # the coordinator changes the waiting job to 4 nodes
    assert [by_id[i].target for i in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert not any(d.action == "grow" for d in plan.decisions)


def test_a_waiting_job_already_at_its_share_is_left_as_it_asked() -> None:
    queue = [tagged(record(9, CAROL, P, 4, reason="Resources"), "hpcsched:sC:1")]
    plan = decide({"p": partition({}, 8)}, queue, {9: reported(9, CAROL, max_nodes=4)})
    (d,) = plan.decisions
    assert (d.action, d.target) == ("start", 4) and not d.sizes_pending


def test_nobody_grows_while_the_newcomer_runs_unmeasured() -> None:
    # Alice's four at one node each; carol's job has started on two and has no step time yet.
    queue = [record(i, ALICE, R, 1, f"n{i}") for i in (1, 2, 3, 4)] + [record(9, CAROL, R, 2, "n[5-6]")]
    _, reports = alice_four()
    reports[9] = dataclasses.replace(reported(9, CAROL, max_nodes=4), measured=False)
    nodes = partition({f"n{i}": "alloc" for i in range(1, 7)}, 8)
    plan = decide({"p": nodes}, queue, reports)
    assert not any(d.action == "grow" for d in plan.decisions), plan.decisions
    held = [d for d in plan.decisions if d.slurm_job_id != 9 and "not measured yet" in d.reason]
    assert held and all(d.action == "keep" for d in held)
    # Measured, carol is in the allocator's view and alice's jobs grow no more than the share allows.
    reports[9] = dataclasses.replace(reports[9], measured=True)
    plan = decide({"p": nodes}, queue, reports)
    alice = sum(d.target for d in plan.decisions if d.uid == ALICE)
    assert alice <= 5, plan.decisions


def test_a_tagged_job_not_reported_yet_holds_grows_for_a_grace_period_only() -> None:
    now = 50_000.0
    queue = [record(1, ALICE, R, 1, "n1"), tagged(record(9, CAROL, R, 2, "n[2-3]"), "hpcsched:sC:1")]
    queue[1] = dataclasses.replace(queue[1], start_time=now - 30)
    reports = {1: reported(1, ALICE)}
    nodes = partition({"n1": "alloc", "n2": "alloc", "n3": "alloc"}, 8)
    (d,) = decide({"p": nodes}, queue, reports, now=now).decisions
    assert d.action == "keep" and "not reported yet" in d.reason
    (d,) = decide({"p": nodes}, queue, reports, now=now + UNREPORTED_GRACE_S).decisions
    assert d.action == "grow"  # a user who runs hpcsched without the coordinator holds nothing for ever


def test_a_grow_allocation_of_alices_never_makes_another_job_shrink() -> None:
    # Alice's job 1 grows: its new 3-node allocation waits (tagged a2, not reported yet). Carol's
    # job runs unmeasured on two nodes. Before the fix the allocation was "another user waiting"
    # and carol shrank to 1 for it.
    queue = [record(i, ALICE, R, 1, f"n{i}") for i in (1, 2, 3, 4)] + [record(9, CAROL, R, 2, "n[5-6]")]
    queue.append(tagged(record(20, ALICE, P, 3, reason="Resources"), "hpcsched:sA:11:a2"))
    _, reports = alice_four()
    reports[9] = dataclasses.replace(reported(9, CAROL, max_nodes=4), measured=False)
    nodes = partition({f"n{i}": "alloc" for i in range(1, 7)}, 8)
    plan = decide({"p": nodes}, queue, reports, busy={1: 3})
    by_id = {d.slurm_job_id: d for d in plan.decisions}
    assert (by_id[9].action, by_id[9].target) == ("keep", 2)
    assert plan.rooms[0].reserved == 0


def test_someone_elses_job_with_alices_tag_is_still_somebody_waiting() -> None:
    # Mallory copies alice's tag into his job's comment: it is not alice's, so it is served as any
    # other waiting job (alice's jobs shrink for it) and takes nothing of alice's share.
    queue, reports = alice_four()
    queue.append(tagged(record(30, MALLORY, P, 2, reason="Resources"), "hpcsched:sA:11:a2"))
    plan = decide({"p": FULL}, queue, reports)
    assert plan.rooms[0].served == (30,) and plan.rooms[0].reserved == 2


def test_no_job_grows_into_the_idle_nodes_another_jobs_grow_is_about_to_take() -> None:
    # Seen on the local cluster: carol's job grew 1 -> 2 nodes, and the next pass, before her new
    # allocation had started, counted her at 1 and grew one of alice's jobs 1 -> 4 into the same
    # idle nodes. Alice's 4-node allocation then waited in the queue for good, her job counted as
    # busy (never shrunk), and carol's job was never given more.
    queue = [record(i, ALICE, R, 1, f"n{i}") for i in (1, 2, 3, 4)] + [record(9, CAROL, R, 1, "n5")]
    queue.append(tagged(record(20, CAROL, P, 2, reason="Resources"), "hpcsched:sC:1:a2"))
    reports = {i: dataclasses.replace(reported(i, ALICE, max_nodes=4), store="sA", job_id=10 + i) for i in (1, 2, 3, 4)}
    reports[9] = dataclasses.replace(reported(9, CAROL, max_nodes=4), store="sC", job_id=1)
    nodes = partition({f"n{i}": "alloc" for i in range(1, 6)}, 8)
    plan = decide({"p": nodes}, queue, reports, busy={9: 2})
    by_id = {d.slurm_job_id: d for d in plan.decisions}
    assert by_id[9].action == "busy"
    assert [by_id[i].action for i in (1, 2, 3, 4)] == ["keep"] * 4  # the pass before the fix grew job 1 to 4
    assert any("resize of Slurm job 9 is still under way" in by_id[i].reason for i in (1, 2, 3, 4))


def test_a_grow_under_way_holds_the_nodes_it_goes_to_not_the_ones_it_has() -> None:
    # Carol's job grows 1 -> 4 nodes (its new allocation waits). Dave's job waits to start: it
    # gets what is left beside carol's 4 and alice's 1, not beside carol's 1 (before: 6 nodes,
    # which with carol's allocation would need 12 of the 8).
    queue = [record(1, ALICE, R, 1, "n1"), record(9, CAROL, R, 1, "n2"),
             tagged(record(20, CAROL, P, 4, reason="Resources"), "hpcsched:sC:1:a2"),
             tagged(record(30, DAVE, P, 1, reason="Resources"), "hpcsched:sD:1")]
    reports = {1: dataclasses.replace(reported(1, ALICE), store="sA", job_id=11),
               9: dataclasses.replace(reported(9, CAROL), store="sC", job_id=1),
               30: dataclasses.replace(reported(30, DAVE), store="sD", job_id=1)}
    plan = decide({"p": partition({"n1": "alloc", "n2": "alloc"}, 8)}, queue, reports, busy={9: 4})
    by_id = {d.slurm_job_id: d for d in plan.decisions}
    assert by_id[30].action == "start" and by_id[1].target + 4 + by_id[30].target <= 8


def test_in_a_crowded_partition_a_newcomer_that_never_ran_stops_nobody_on_the_real_cluster() -> None:
    """Alice's eight jobs hold the eight nodes at their minimum; carol's job never ran. The
    allocator would stop one of alice's jobs for it (least attained service), but a running job is
    never stopped on the real cluster, only shrunk: every job of alice's keeps its node and says so."""
    queue = [record(i, ALICE, R, 1, f"n{i}") for i in range(1, 9)]
    reports = {i: dataclasses.replace(reported(i, ALICE, max_nodes=4), store="sA", job_id=10 + i) for i in range(1, 9)}
    queue.append(tagged(record(9, CAROL, P, 1, reason="Resources"), "hpcsched:sC:1"))
    carol = dataclasses.replace(reported(9, CAROL, max_nodes=4), store="sC", job_id=1)
    reports[9] = dataclasses.replace(carol, view=dataclasses.replace(carol.view, current_gpus=0, never_ran=True))
    by_id = {d.slurm_job_id: d for d in decide({"p": FULL}, queue, reports).decisions}
    assert all((by_id[i].action, by_id[i].target) == ("keep", 1) for i in range(1, 9))
    assert any(by_id[i].reason.startswith("never stopped") for i in range(1, 9))
