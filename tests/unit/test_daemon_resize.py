"""One resize at a time (found by the crash loop: four shrinks of one job were accepted before the
first ran, each recorded RUNNING, and a last one that could not be signalled marked the whole job
CANCELLED while Slurm completed it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeslurm import Core

from hpcsched.daemon.resize import resize_in_flight
from hpcsched.jobs import layout
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.slurm.runner import SlurmCommandError


def attempt(number: int, reason: AttemptReason, state: JobState, slurm_id: int | None) -> Attempt:
    return Attempt(job_id=1, number=number, reason=reason, state=state, nodes=2, slurm_job_id=slurm_id)


def job(*attempts: Attempt) -> Job:
    return Job(id=1, name="digits", user="u", uid=1000, state=attempts[-1].state, request={"nodes": "1-2"},
               created=0.0, job_dir="/jobs/s-1", attempts=attempts)


RUNNING = attempt(1, AttemptReason.SUBMIT, JobState.RUNNING, 10)


def test_a_running_job_without_a_resize_under_way_may_be_resized() -> None:
    assert resize_in_flight(job(RUNNING), request_pending=False, started=True) is None
    started_shrink = attempt(2, AttemptReason.RESIZE, JobState.RUNNING, 10)
    assert resize_in_flight(job(RUNNING, started_shrink), request_pending=False, started=True) is None


def test_a_request_the_allocation_has_not_taken_blocks_another_resize() -> None:
    why = resize_in_flight(job(RUNNING), request_pending=True, started=True)
    assert why is not None and "has not taken yet" in why


def test_a_shrink_whose_attempt_has_not_started_blocks_another_even_when_slurm_shows_it_running() -> None:
    shrink = attempt(2, AttemptReason.RESIZE, JobState.RUNNING, 10)  # the allocation runs; the attempt does not yet
    why = resize_in_flight(job(RUNNING, shrink), request_pending=False, started=False)
    assert why is not None and "attempt 2 has not started" in why


def test_a_grow_waiting_for_its_allocation_blocks_another_resize() -> None:
    submitting = attempt(2, AttemptReason.RESIZE, JobState.SUBMITTING, None)
    pending = attempt(2, AttemptReason.RESIZE, JobState.PENDING, 11)
    for successor in (submitting, pending):
        why = resize_in_flight(job(RUNNING, successor), request_pending=False, started=False)
        assert why is not None and "is growing" in why


def test_a_shrink_that_cannot_be_signalled_is_withdrawn_and_the_job_goes_on(tmp_path: Path) -> None:
    core = Core(tmp_path)
    job_id, slurm_id = core.submit(nodes="1-2")
    core.slurm.jobs[slurm_id].nodes = 2
    core.slurm.start(slurm_id)
    core.cycle()
    core.store.set_progress(job_id, {"elastic": True}, 0)
    running = core.store.get_job(job_id)
    assert running is not None and running.state is JobState.RUNNING and running.current is not None
    core.slurm.fail("scancel")  # the checkpoint signal cannot be delivered
    with pytest.raises(SlurmCommandError):
        core.service.resizer.resize(running, 1, "shrink")
    after = core.store.get_job(job_id)
    assert after is not None and after.state is JobState.RUNNING, "a resize not carried out never ends the job"
    assert [a.number for a in after.attempts] == [1]
    assert not layout.resize_request(after.job_dir).exists()
