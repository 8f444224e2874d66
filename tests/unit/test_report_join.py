"""Joining Slurm's runs to hpcsched's jobs and attempts, and what each run got."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hpcsched.report.join import job_runs, pair_attempts, runs_by_slurm_id, usage, usages
from hpcsched.report.values import SlurmRun

T0 = 1_795_800_000.0


def run(job_id: int = 7, start: float | None = T0 + 10, end: float | None = T0 + 70, *, submit: float = T0,
        nodes: int = 2, comment: str = "hpcsched:store:1", state: str = "COMPLETED", gpus: int | None = 4) -> SlurmRun:
    return SlurmRun(job_id=job_id, user="alice", comment=comment, slurm_state=state, exit_code=0, submit_time=submit,
                    start_time=start, end_time=end, nodes=nodes if start is not None else 0,
                    node_list="n[1-2]" if start is not None else "", cpus=16, gpus=gpus)


def job(*attempts: dict[str, Any], created: float = T0 - 5, job_id: int = 1) -> dict[str, Any]:
    return {"id": job_id, "created": created, "attempts": list(attempts)}


def attempt(number: int, slurm_id: int | None = 7, started: bool = True) -> dict[str, Any]:
    return {"number": number, "slurm_job_id": slurm_id, "start_time": T0 if started else None}


def test_usage_of_a_finished_run() -> None:
    u = usage(run(), now=T0 + 1000)
    assert (u.queue_wait, u.elapsed, u.nodes) == (10, 60, 2)
    assert u.node_hours == pytest.approx(2 * 60 / 3600)
    assert u.cpu_hours == pytest.approx(16 * 60 / 3600)
    assert u.gpu_hours == pytest.approx(4 * 60 / 3600)


def test_a_running_run_counts_until_now_and_a_waiting_one_waits_until_now() -> None:
    assert usage(run(end=None), now=T0 + 100).elapsed == 90
    waiting = usage(run(start=None, end=None), now=T0 + 100)
    assert (waiting.elapsed, waiting.node_hours, waiting.queue_wait) == (0, 0, 100)


def test_a_run_cancelled_in_the_queue_waited_until_its_end() -> None:
    u = usage(replace(run(start=None, end=None), end_time=T0 + 30), now=T0 + 100)
    assert (u.queue_wait, u.node_hours) == (30, 0)


def test_unreported_gpus_stay_unknown() -> None:
    assert usage(run(gpus=None), now=T0).gpu_hours is None


def test_after_a_shrink_in_place_no_node_second_is_counted_twice() -> None:
    """Slurm closes the RESIZING record at the shrink and repeats the original start on the next."""
    before = run(start=T0 + 10, end=T0 + 40, nodes=3, state="RESIZING")
    after = run(start=T0 + 10, end=T0 + 100, submit=T0 + 40, nodes=1)
    first, second = usages([before, after], now=T0 + 200)
    assert (first.elapsed, second.elapsed) == (30, 60)
    assert second.start_time == T0 + 40 and second.queue_wait == 0
    assert first.node_hours + second.node_hours == pytest.approx((3 * 30 + 1 * 60) / 3600)


def test_runs_with_another_jobs_tag_or_from_before_the_job_are_not_its_runs() -> None:
    mine = run(comment="hpcsched:store:1")
    other_store = run(comment="hpcsched:elsewhere:1")
    other_job = run(comment="hpcsched:store:2")
    reused_id = run(comment="", submit=T0 - 3600, start=T0 - 3590, end=T0 - 3500)
    untagged_later = run(comment="", submit=T0 + 500, start=T0 + 510, end=T0 + 600)
    runs = runs_by_slurm_id([mine, other_store, other_job, reused_id, untagged_later])
    assert job_runs(job(attempt(1)), runs, "store") == {7: [mine, untagged_later]}
    assert job_runs(job(attempt(1)), runs, None) == {7: [mine, other_store, untagged_later]}


def test_B7_a_reused_slurm_id_after_a_controller_reset_is_not_joined_to_a_finished_job() -> None:
    """Slurm's ids start again at 1: a later job (untagged, as where accounting keeps no comments,
    or another hpcsched job's) with the old job's Slurm id is not the old job's run."""
    mine = run(comment="", submit=T0, start=T0 + 10, end=T0 + 70)
    later_plain = run(comment="", submit=T0 + 5000, start=None, end=T0 + 5030, state="CANCELLED")
    later_ours = run(comment="hpcsched:store:9", submit=T0 + 6000, start=T0 + 6001, end=T0 + 6100)
    finished = job({**attempt(1), "end_time": T0 + 70})
    runs = runs_by_slurm_id([mine, later_plain, later_ours])
    assert job_runs(finished, runs, "store") == {7: [mine]}
    report_pairs, complete = pair_attempts(finished["attempts"], {7: usages([mine], now=T0 + 9000)})
    assert complete and [u.slurm_state for _, u in report_pairs if u is not None] == ["COMPLETED"]


def test_an_open_job_still_takes_untagged_runs_submitted_after_it_was_created() -> None:
    first = run(comment="", submit=T0, start=T0 + 10, end=T0 + 70, state="REQUEUED")
    requeued = run(comment="", submit=T0 + 80, start=T0 + 200, end=None, state="RUNNING")
    open_job = job({**attempt(1), "end_time": T0 + 70}, {**attempt(2), "end_time": None})
    assert job_runs(open_job, runs_by_slurm_id([first, requeued]), "store") == {7: [first, requeued]}


def test_a_job_cancelled_while_pending_keeps_the_same_queue_wait_at_every_report() -> None:
    cancelled = run(start=None, end=T0 + 30, state="CANCELLED")
    waits = {usage(cancelled, now=now).queue_wait for now in (T0 + 100, T0 + 10_000, T0 + 1e6)}
    assert waits == {30}


def test_runs_come_oldest_first_and_a_pending_run_last() -> None:
    pending = run(start=None, end=None, submit=T0 + 80)
    late, early = run(start=T0 + 90, end=T0 + 95), run(start=T0 + 10, end=T0 + 70)
    assert job_runs(job(attempt(1)), runs_by_slurm_id([pending, late, early]), None)[7] == [early, late, pending]


def test_attempts_pair_with_their_runs_in_order() -> None:
    """A requeue: attempts 1 and 2 ran as two runs of Slurm job 7; attempt 3 is a grow on job 8."""
    runs = {7: usages([run(end=T0 + 50), run(start=T0 + 60, end=T0 + 90)], T0 + 100),
            8: usages([run(job_id=8, start=T0 + 95, end=None)], T0 + 100)}
    pairs, complete = pair_attempts([attempt(3, 8), attempt(1), attempt(2)], runs)
    assert complete
    assert [(a["number"] if a else None, u.slurm_job_id if u else None) for a, u in pairs] == [(1, 7), (2, 7), (3, 8)]
    assert [u.elapsed for _, u in pairs if u] == [40, 30, 5]


def test_an_attempt_still_in_the_queue_has_no_run_and_the_job_is_still_complete() -> None:
    runs = {7: usages([run()], T0 + 100)}
    pairs, complete = pair_attempts([attempt(1), attempt(2, started=False), attempt(3, None, started=False)], runs)
    assert complete and [u is not None for _, u in pairs] == [True, False, False]


def test_a_started_attempt_without_its_run_makes_the_job_incomplete() -> None:
    _, complete = pair_attempts([attempt(1), attempt(2)], {7: usages([run()], T0 + 100)})
    assert not complete


def test_runs_hpcsched_has_no_attempt_for_are_kept() -> None:
    runs = {7: usages([run(end=T0 + 50), run(start=T0 + 60, end=T0 + 90)], T0 + 100)}
    pairs, complete = pair_attempts([attempt(1)], runs)
    assert complete and [a is None for a, _ in pairs] == [False, True]
