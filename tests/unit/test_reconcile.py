"""Reconciliation of attempts with squeue and sacct: "unknown is not done"."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hpcsched.daemon.reconcile import (
    AttemptUpdate,
    find_by_tag,
    latest_runs,
    missing_from_queue,
    reconcile,
    tracked_attempts,
)
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.slurm.parse import SlurmJobRecord, parse_sacct, parse_squeue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"


def attempt(slurm_job_id: int | None = 100, state: JobState = JobState.RUNNING, **kw: Any) -> Attempt:
    return Attempt(job_id=1, number=1, reason=AttemptReason.SUBMIT, state=state, nodes=2, slurm_job_id=slurm_job_id, **kw)


def record(job_id: int = 100, state: JobState = JobState.RUNNING, **kw: Any) -> SlurmJobRecord:
    values: dict[str, Any] = {
        "job_id": job_id, "name": "t", "comment": "", "slurm_state": state.value, "state": state, "reason": "None",
        "node_count": 2, "node_list": "node[1-2]", "submit_time": 10.0, "start_time": 20.0, "end_time": None,
        "exit_code": None, "restart_count": 0,
    }
    return SlurmJobRecord(**{**values, **kw})


def job(job_id: int, *attempts: Attempt, state: JobState = JobState.RUNNING) -> Job:
    return Job(id=job_id, name="t", user="alice", uid=1000, state=state, request={}, created=0.0, job_dir="/j",
               attempts=attempts)


# --- unknown is not done ------------------------------------------------------------------------


def test_B2_attempt_in_neither_queue_nor_accounting_becomes_unknown_not_final() -> None:
    (update,) = reconcile([attempt()], queue={}, accounting={})
    assert update == AttemptUpdate(1, 1, {"state": JobState.UNKNOWN, "state_reason": "not in squeue or sacct"})
    assert not update.changes["state"].is_final


def test_attempt_already_unknown_and_still_missing_gets_no_update() -> None:
    assert reconcile([attempt(state=JobState.UNKNOWN)], queue={}, accounting={}) == []


def test_attempt_missing_from_queue_keeps_its_state_when_accounting_is_unavailable() -> None:
    assert reconcile([attempt()], queue={}, accounting=None) == []


def test_B2_attempt_missing_from_queue_takes_the_final_state_from_accounting() -> None:
    done = record(state=JobState.FAILED, end_time=30.0, exit_code=3, reason="NonZeroExitCode")
    (update,) = reconcile([attempt(submit_time=10.0, start_time=20.0, node_list="node[1-2]")], queue={}, accounting={100: done})
    assert update.changes == {"state": JobState.FAILED, "state_reason": "NonZeroExitCode", "end_time": 30.0, "exit_code": 3}


def test_queue_wins_over_accounting() -> None:
    running = record(state=JobState.RUNNING)
    stale = record(state=JobState.COMPLETED, end_time=5.0, exit_code=0)
    (update,) = reconcile([attempt(state=JobState.PENDING)], queue={100: running}, accounting={100: stale})
    assert update.changes["state"] is JobState.RUNNING


def test_attempt_that_matches_the_queue_gets_no_update() -> None:
    same = attempt(state=JobState.RUNNING, node_list="node[1-2]", submit_time=10.0, start_time=20.0)
    assert reconcile([same], queue={100: record()}, accounting=None) == []


def test_pending_job_does_not_change_the_requested_node_count() -> None:
    pending = record(state=JobState.PENDING, node_count=5, node_list="", start_time=None)
    (update,) = reconcile([attempt(state=JobState.SUBMITTING)], queue={100: pending}, accounting=None)
    assert update.changes["state"] is JobState.PENDING
    assert "nodes" not in update.changes and "node_list" not in update.changes


def test_slurm_reason_none_is_recorded_as_no_reason() -> None:
    (update,) = reconcile([attempt(state=JobState.PENDING, state_reason="Resources")], queue={100: record()}, accounting=None)
    assert update.changes["state_reason"] == ""


def test_recorded_queue_moves_a_pending_attempt_to_failed_with_exit_code_3() -> None:
    queue = {r.job_id: r for r in parse_squeue((FIXTURES / "squeue-mixed.json").read_text())}
    (update,) = reconcile([attempt(slurm_job_id=5, state=JobState.RUNNING)], queue=queue, accounting=None)
    assert (update.changes["state"], update.changes["exit_code"]) == (JobState.FAILED, 3)


# --- which attempts are tracked -----------------------------------------------------------------


def test_only_the_newest_open_attempt_with_a_slurm_id_is_tracked() -> None:
    old = attempt(slurm_job_id=100, state=JobState.PREEMPTED)
    new = dataclasses.replace(old, number=2, slurm_job_id=101, state=JobState.PENDING)
    jobs = [
        job(1, old, new),
        job(2, attempt(slurm_job_id=None, state=JobState.SUBMITTING)),
        job(3, attempt(slurm_job_id=300, state=JobState.COMPLETED)),
        job(4),
    ]
    assert tracked_attempts(jobs) == [new]


def test_missing_from_queue_lists_sorted_slurm_ids_not_in_the_queue() -> None:
    attempts = [attempt(slurm_job_id=9), attempt(slurm_job_id=3), attempt(slurm_job_id=5)]
    assert missing_from_queue(attempts, {5: record(5)}) == [3, 9]


# --- requeued jobs and adoption -----------------------------------------------------------------


def test_latest_runs_keeps_the_newest_run_of_a_requeued_job() -> None:
    first = record(8, submit_time=10.0, start_time=15.0, reason="first")
    second = record(8, submit_time=18.0, start_time=60.0, reason="second")
    assert latest_runs([second, first])[8].reason == "second"
    assert latest_runs([first, second])[8].reason == "second"


def test_latest_runs_of_recorded_sacct_keeps_the_second_run_of_job_8() -> None:
    runs = latest_runs(parse_sacct((FIXTURES / "sacct-mixed.json").read_text()))
    assert sorted(runs) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert (runs[8].start_time, runs[8].reason) == (1795800861.0, "BeginTime")


def test_find_by_tag_returns_the_newest_slurm_job_carrying_the_tag() -> None:
    records = [record(3, comment="hpcsched:s:1"), record(9, comment="hpcsched:s:1"), record(4, comment="hpcsched:s:10")]
    found = find_by_tag(records, "hpcsched:s:1")
    assert found is not None and found.job_id == 9


def test_find_by_tag_needs_an_exact_match() -> None:
    assert find_by_tag([record(4, comment="hpcsched:s:10")], "hpcsched:s:1") is None


def test_find_by_tag_in_the_recorded_queue() -> None:
    queue = parse_squeue((FIXTURES / "squeue-mixed.json").read_text())
    found = find_by_tag(queue, "hpcsched:fixture:6")
    assert found is not None and (found.job_id, found.reason) == (9, "JobHeldUser")
