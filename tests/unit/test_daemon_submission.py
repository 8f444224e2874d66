"""Submitting through a fake Slurm: an sbatch error is resolved by looking the job's tag up (A3),
a restart neither loses nor duplicates a job (A1, A2), and a batch script that cannot be written
fails its job with the reason (item 4 of the reliability issue)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fakeslurm import Core
from test_reconcile import record

from hpcsched.daemon.monitor import Monitor
from hpcsched.daemon.reconcile import TagVerdict, settle_by_tag
from hpcsched.daemon.service import Caller, JobService
from hpcsched.daemon.submission import NO_ANSWER_GRACE_S, BatchScriptError, Submitter
from hpcsched.jobs.model import AttemptReason, JobState
from hpcsched.slurm.runner import SlurmCommandError


@pytest.fixture
def d(tmp_path: Path) -> Core:
    return Core(tmp_path)


def service(d: Core) -> JobService:
    monitor = Monitor(d.store, d.client, d.submitter, 5.0, clock=d.clock)
    return JobService(d.store, d.client, d.submitter, monitor, threading.Event(), clock=d.clock,
                      state_dir=str(d.root / "state"))


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("found", "looked_up", "sbatch_failed", "attempt", "verdict"), [
    (True, True, True, 1, TagVerdict.ADOPT),
    (True, True, False, 3, TagVerdict.ADOPT),
    (False, False, True, 1, TagVerdict.WAIT),
    (False, False, False, 1, TagVerdict.WAIT),
    (False, True, True, 1, TagVerdict.FAIL),
    (False, True, True, 2, TagVerdict.WITHDRAW),
    (False, True, False, 1, TagVerdict.SUBMIT),
])
def test_A3_rule_adopts_what_slurm_has_and_never_fails_a_job_it_could_not_look_up(
        found: bool, looked_up: bool, sbatch_failed: bool, attempt: int, verdict: TagVerdict) -> None:
    assert settle_by_tag(record() if found else None, looked_up, sbatch_failed, attempt) is verdict


def test_A3_rule_waits_for_a_job_an_unanswered_sbatch_may_still_queue() -> None:
    assert settle_by_tag(None, True, True, 1, may_appear=True) is TagVerdict.WAIT
    assert settle_by_tag(None, True, True, 2, may_appear=True) is TagVerdict.WAIT
    assert settle_by_tag(record(), True, True, 1, may_appear=True) is TagVerdict.ADOPT


# --- sbatch gets no answer, and Slurm lists the job only later (or never) -------------------------


def test_A3_a_job_slurm_queues_after_sbatch_timed_out_is_adopted_not_failed(d: Core) -> None:
    """slurmctld was slow: sbatch was killed after 60 s, the first lookup finds nothing, and the
    job shows up in the queue a little later. It is adopted; nothing is submitted twice."""
    d.slurm.sbatch_fault = "time_out"
    job = d.submitter.submit(d.accept())
    assert job.state is JobState.SUBMITTING and job.current is not None
    assert job.current.state_reason == "sbatch failed: no answer within 60 s; looking the job up by its tag"
    d.clock.advance(30.0)
    d.submitter.settle()
    late = d.slurm.queue(d.tag(job.id))
    d.clock.advance(30.0)
    d.submitter.settle()
    adopted = d.store.get_job(job.id)
    assert adopted is not None and adopted.state is JobState.PENDING
    assert adopted.current is not None and adopted.current.slurm_job_id == late
    assert len(d.slurm.called("sbatch")) == 1


def test_A3_a_job_slurm_never_lists_after_sbatch_timed_out_fails_after_the_grace_with_why(d: Core) -> None:
    d.slurm.sbatch_fault = "time_out"
    job_id = d.accept()
    d.submitter.submit(job_id)
    d.clock.advance(NO_ANSWER_GRACE_S - 1)
    d.submitter.settle()
    waiting = d.store.get_job(job_id)
    assert waiting is not None and waiting.state is JobState.SUBMITTING
    d.clock.advance(2.0)
    d.submitter.settle()
    failed = d.store.get_job(job_id)
    assert failed is not None and failed.state is JobState.FAILED and failed.current is not None
    assert "sbatch got no answer and Slurm has not listed the job" in failed.current.state_reason
    assert len(d.slurm.called("sbatch")) == 1, "never a second sbatch for a job Slurm may still queue"


# --- A3: sbatch fails after Slurm queued the job --------------------------------------------------


@pytest.mark.parametrize("fault", ["queue_then_fail", "queue_then_time_out"])
def test_A3_sbatch_error_after_queueing_is_adopted(d: Core, fault: str) -> None:
    d.slurm.sbatch_fault = fault
    job = d.submitter.submit(d.accept())
    (queued,) = d.slurm.tagged(d.tag(job.id))
    assert (job.state, job.current.slurm_job_id if job.current else None) == (JobState.PENDING, queued.job_id)
    assert [kind for _, kind, _ in d.store.events(job.id)][-2:] == ["state", "adopted"]
    d.submitter.settle()
    assert len(d.slurm.called("sbatch")) == 1, "no second sbatch for an adopted job"


def test_A3_rejected_sbatch_fails_the_job_with_sbatchs_error(d: Core) -> None:
    d.slurm.sbatch_fault = "reject"
    job_id = d.accept()
    with pytest.raises(SlurmCommandError):
        d.submitter.submit(job_id)
    job = d.store.get_job(job_id)
    assert job is not None and job.state is JobState.FAILED
    assert job.current is not None and "Invalid partition name" in job.current.state_reason


def test_A3_sbatch_error_when_slurm_cannot_be_asked_waits_and_never_submits_twice(d: Core) -> None:
    d.slurm.sbatch_fault = "queue_then_fail"
    d.slurm.down = {"squeue"}
    job = d.submitter.submit(d.accept())
    assert job.state is JobState.SUBMITTING and job.current is not None
    assert "looking the job up by its tag" in job.current.state_reason
    d.submitter.settle()  # Slurm still silent: nothing decided, nothing submitted
    d.submitter.submit(job.id)
    assert len(d.slurm.called("sbatch")) == 1
    d.slurm.down = set()
    d.submitter.settle()
    (queued,) = d.slurm.tagged(d.tag(job.id))
    adopted = d.store.get_job(job.id)
    assert adopted is not None and adopted.current is not None and adopted.current.slurm_job_id == queued.job_id
    assert len(d.slurm.called("sbatch")) == 1


def test_A3_cancel_reaches_an_adopted_job(d: Core) -> None:
    d.slurm.sbatch_fault = "queue_then_fail"
    job = d.submitter.submit(d.accept())
    service(d).op_cancel({"job": job.id}, Caller(uid=1000, user="alice"))
    assert [j.state for j in d.slurm.tagged(d.tag(job.id))] == ["CANCELLED"]


def test_A3_cancel_while_the_job_is_unknown_reaches_it_once_slurm_answers(d: Core) -> None:
    d.slurm.sbatch_fault = "queue_then_fail"
    d.slurm.down = {"squeue"}
    svc = service(d)
    job = d.submitter.submit(d.accept())
    answer = svc.op_cancel({"job": job.id}, Caller(uid=1000, user="alice"))
    assert answer["state"] != "CANCELLED", "not cancelled while Slurm may run it"
    d.slurm.down = set()
    svc.monitor.poll_once()
    svc.monitor.poll_once()
    assert [j.state for j in d.slurm.tagged(d.tag(job.id))] == ["CANCELLED"]
    cancelled = d.store.get_job(job.id)
    assert cancelled is not None and cancelled.state is JobState.CANCELLED


def grow(d: Core, fault: str) -> int:
    """A running elastic job asked to grow: attempt 2 committed, its sbatch failing with ``fault``."""
    job = d.submitter.submit(d.accept(nodes="1-2"))
    d.store.update_attempt(job.id, 1, d.clock(), state=JobState.RUNNING)
    d.store.add_attempt(job.id, 2, d.clock(), reason=AttemptReason.RESIZE, state=JobState.SUBMITTING, nodes=2,
                        slurm_job_id=None, log_path="")
    d.slurm.sbatch_fault = fault
    return job.id


def test_A3_grow_whose_sbatch_failed_after_queueing_is_adopted(d: Core) -> None:
    job = d.submitter.submit(grow(d, "queue_then_fail"))
    (queued,) = d.slurm.tagged(d.tag(job.id, 2))
    assert job.current is not None and (job.current.number, job.current.slurm_job_id) == (2, queued.job_id)


def test_A3_rejected_grow_is_withdrawn_and_the_job_runs_on(d: Core) -> None:
    job_id = grow(d, "reject")
    with pytest.raises(SlurmCommandError):
        d.submitter.submit(job_id)
    job = d.store.get_job(job_id)
    assert job is not None and job.state is JobState.RUNNING and [a.number for a in job.attempts] == [1]


# --- A1, A2: a restart --------------------------------------------------------------------------


def test_A1_restart_submits_a_job_slurm_never_got_exactly_once(d: Core) -> None:
    job_id = d.accept()
    Submitter(d.store, d.client, d.settings, clock=d.clock).settle()
    assert len(d.slurm.tagged(d.tag(job_id))) == 1 and len(d.slurm.called("sbatch")) == 1


def test_A2_restart_adopts_a_job_slurm_has_without_sbatch(d: Core) -> None:
    job_id = d.accept()
    slurm_id = d.slurm.queue(d.tag(job_id))
    Submitter(d.store, d.client, d.settings, clock=d.clock).settle()
    job = d.store.get_job(job_id)
    assert job is not None and job.current is not None and job.current.slurm_job_id == slurm_id
    assert len(d.slurm.called("sbatch")) == 0


# --- a batch script that cannot be written ---------------------------------------------------------


def block_job_dir(d: Core, job_id: int) -> Path:
    """Put a file where the job's directory goes, so writing its batch script fails (as root,
    permissions would not stop it)."""
    job = d.store.get_job(job_id)
    assert job is not None
    Path(job.job_dir).parent.mkdir(parents=True, exist_ok=True)
    Path(job.job_dir).write_text("in the way")
    return Path(job.job_dir)


def test_batch_script_that_cannot_be_written_fails_the_job_naming_the_path(d: Core) -> None:
    job_id = d.accept()
    path = block_job_dir(d, job_id)
    with pytest.raises(BatchScriptError):
        d.submitter.submit(job_id)
    job = d.store.get_job(job_id)
    assert job is not None and job.state is JobState.FAILED and job.current is not None
    assert job.current.state_reason.startswith(
        f"cannot write the batch script {path}/batch.sh: the job directory {path} exists before submission")
    assert len(d.slurm.called("sbatch")) == 0
