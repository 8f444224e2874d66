"""A grow whose allocation ends before it starts is withdrawn: the job trains on in the allocation
it has, and the daemon goes on watching that one. Found by trying it: a user (or an administrator,
or a limit) cancelling the waiting successor of a grow marked the whole job CANCELLED while it
went on training, unwatched, in its old allocation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeslurm import ALICE, Core

from hpcsched.daemon.reconcile import AttemptUpdate, withdrawn_grow
from hpcsched.jobs import layout
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.slurm.parse import SlurmJobRecord


@pytest.fixture
def d(tmp_path: Path) -> Core:
    return Core(tmp_path)


def growing(d: Core) -> tuple[int, int, int]:
    """A job running on one node whose grow to two waits in the queue: (job, old, new Slurm ids)."""
    job = d.submitter.submit(d.accept(nodes="1-2"))
    assert job.current is not None and job.current.slurm_job_id is not None
    old = job.current.slurm_job_id
    d.slurm.start(old)
    d.cycle()
    d.store.add_attempt(job.id, 2, d.clock(), reason=AttemptReason.RESIZE, state=JobState.SUBMITTING, nodes=2,
                        slurm_job_id=None, log_path="")
    grown = d.submitter.submit(job.id)
    assert grown.current is not None and grown.current.slurm_job_id is not None
    d.cycle()
    return job.id, old, grown.current.slurm_job_id


def job_of(d: Core, job_id: int) -> Job:
    job = d.store.get_job(job_id)
    assert job is not None
    return job


def test_a_grow_cancelled_while_it_waits_is_withdrawn_and_the_job_runs_on(d: Core) -> None:
    job_id, old, new = growing(d)
    d.slurm.end(new, "CANCELLED")  # `scancel NEW` by the user, an administrator or a limit
    d.clock.advance(10)
    d.cycle()
    job = job_of(d, job_id)
    assert job.state is JobState.RUNNING
    assert [(a.number, a.slurm_job_id) for a in job.attempts] == [(1, old)]
    removed = [detail for _, kind, detail in d.store.events(job_id) if kind == "attempt_removed"]
    assert len(removed) == 1 and f"Slurm job {new}" in removed[0] and "CANCELLED" in removed[0]
    d.slurm.end(old, "COMPLETED")  # and the daemon still watches the allocation that trains
    d.clock.advance(10)
    d.cycle()
    assert job_of(d, job_id).state is JobState.COMPLETED


def test_after_a_withdrawn_grow_the_next_grow_adopts_its_own_allocation_not_the_cancelled_one(d: Core) -> None:
    job_id, _, cancelled = growing(d)
    d.slurm.end(cancelled, "CANCELLED")
    d.clock.advance(10)
    d.cycle()
    d.store.add_attempt(job_id, 2, d.clock(), reason=AttemptReason.RESIZE, state=JobState.SUBMITTING, nodes=2,
                        slurm_job_id=None, log_path="")
    d.slurm.sbatch_fault = "queue_then_fail"  # the same tag as the cancelled one: found by tag
    job = d.submitter.submit(job_id)
    assert job.current is not None and job.current.slurm_job_id not in (None, cancelled)
    assert job.state is JobState.PENDING and job.shown()[0] is JobState.RUNNING


def test_cancelling_the_job_during_a_grow_still_cancels_it(d: Core) -> None:
    job_id, old, new = growing(d)
    d.service.op_cancel({"job": job_id}, ALICE)
    assert d.slurm.jobs[new].state == "CANCELLED"  # the waiting allocation goes first
    d.slurm.end(old, "CANCELLED")
    d.clock.advance(10)
    d.cycle()
    assert job_of(d, job_id).state is JobState.CANCELLED


def test_a_successor_that_started_is_not_withdrawn_when_it_ends(d: Core) -> None:
    job_id, _, new = growing(d)
    job = job_of(d, job_id)
    info = layout.attempt_dir(job.job_dir, 2)
    info.mkdir(parents=True)
    (info / "info.json").write_text(json.dumps({"attempt": 2, "slurm_job_id": new}))  # its driver ran
    d.slurm.end(new, "FAILED")
    d.clock.advance(10)
    d.cycle()
    job = job_of(d, job_id)
    assert job.state is JobState.FAILED and len(job.attempts) == 2


def test_the_rule_needs_the_old_allocation_running() -> None:
    old = Attempt(job_id=1, number=1, reason=AttemptReason.SUBMIT, state=JobState.RUNNING, nodes=1, slurm_job_id=10)
    new = Attempt(job_id=1, number=2, reason=AttemptReason.RESIZE, state=JobState.PENDING, nodes=2, slurm_job_id=11)
    job = Job(id=1, name="t", user="alice", uid=1000, state=JobState.PENDING, request={}, created=0.0,
              job_dir="", attempts=(old, new))
    ended = AttemptUpdate(1, 2, {"state": JobState.CANCELLED})

    def record(state: JobState, job_id: int = 10) -> SlurmJobRecord:
        return SlurmJobRecord(job_id=job_id, name="t", comment="", slurm_state=state.value, state=state, reason="",
                              node_count=1, node_list="n1", submit_time=1.0, start_time=2.0, end_time=None,
                              exit_code=None, restart_count=0)

    assert withdrawn_grow(job, ended, record(JobState.RUNNING), driver_started=False)
    assert withdrawn_grow(job, ended, None, driver_started=False) is None  # the old allocation has ended
    assert withdrawn_grow(job, ended, record(JobState.COMPLETED), driver_started=False) is None
    assert withdrawn_grow(job, ended, record(JobState.RUNNING, job_id=12), driver_started=False) is None
    assert withdrawn_grow(job, AttemptUpdate(1, 2, {"state_reason": "Resources"}), record(JobState.RUNNING),
                          driver_started=False) is None  # not an end


def old_allocation_ends(d: Core, job_id: int, old: int, outcome: str, exit_code: int, state: str) -> None:
    """The old allocation's driver records its attempt's end (as the job's files show it) and Slurm
    ends the allocation; two monitor cycles follow."""
    attempt = layout.attempt_dir(job_of(d, job_id).job_dir, 1)
    attempt.mkdir(parents=True, exist_ok=True)
    (attempt / "info.json").write_text(json.dumps({"attempt": 1, "slurm_job_id": old, "nodes": 1, "reason": "submit"}))
    (attempt / "end.json").write_text(json.dumps({"attempt": 1, "exit_code": exit_code, "outcome": outcome,
                                                  "end_time": d.clock()}))
    d.slurm.end(old, state)
    for _ in range(2):
        d.clock.advance(10)
        d.cycle()


def test_a_job_that_completes_while_its_grow_waits_is_completed_and_the_waiting_allocation_cancelled(d: Core) -> None:
    job_id, old, new = growing(d)
    old_allocation_ends(d, job_id, old, "completed", 0, "COMPLETED")
    job = job_of(d, job_id)
    assert job.state is JobState.COMPLETED and [a.number for a in job.attempts] == [1]
    assert d.slurm.jobs[new].state == "CANCELLED", "the allocation that had nothing left to do is gone"


def test_a_job_whose_old_allocation_failed_keeps_its_grow_which_resumes_it(d: Core) -> None:
    job_id, old, new = growing(d)
    old_allocation_ends(d, job_id, old, "failed", 1, "FAILED")
    assert d.slurm.jobs[new].state == "PENDING" and len(job_of(d, job_id).attempts) == 2
