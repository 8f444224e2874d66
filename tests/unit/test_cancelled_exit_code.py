"""Issue 14 item 8: a cancelled job's exit code does not read as success, in ``status --json``
as in the table (Slurm, and a driver that stopped cleanly, may record 0 for a cancel)."""

from __future__ import annotations

from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState


def job_with(state: JobState, exit_code: int | None) -> Job:
    attempt = Attempt(job_id=1, number=1, reason=AttemptReason.SUBMIT, state=state, nodes=1, slurm_job_id=9,
                      exit_code=exit_code, start_time=1.0, end_time=2.0)
    return Job(id=1, name="train", user="alice", uid=1000, state=state, request={"nodes": "1"}, created=0.0,
               job_dir="/jobs/s-1", attempts=(attempt,))


def test_status_json_of_a_cancelled_job_has_no_exit_code() -> None:
    shown = job_with(JobState.CANCELLED, 0).as_dict(3.0)
    assert shown["state"] == "CANCELLED"
    assert shown["exit_code"] is None
    assert [a["exit_code"] for a in shown["attempts"]] == [None]


def test_status_json_keeps_the_exit_code_of_a_job_that_ended_by_itself() -> None:
    assert job_with(JobState.COMPLETED, 0).as_dict(3.0)["exit_code"] == 0
    assert job_with(JobState.FAILED, 3).as_dict(3.0)["exit_code"] == 3
