"""Requeues through the monitor over a fake Slurm: each run of a Slurm job becomes an attempt with
the reason the user sees in ``hpcsched status`` (what the driver recorded, else sacct's state of
the previous run), node failures are counted and limited, preemptions and timeouts are not (B5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeslurm import Core

from hpcsched.jobs import layout
from hpcsched.jobs.model import Job, JobState


@pytest.fixture
def core(tmp_path: Path) -> Core:
    return Core(tmp_path)


def job(core: Core, job_id: int) -> Job:
    found = core.store.get_job(job_id)
    assert found is not None
    return found


def running(core: Core, **options: object) -> tuple[int, int]:
    """A submitted job whose Slurm job runs, and the monitor has seen it run."""
    job_id, slurm_id = core.submit(**options)
    core.slurm.start(slurm_id)
    core.cycle()
    assert job(core, job_id).state is JobState.RUNNING
    return job_id, slurm_id


def requeued(core: Core, slurm_id: int, ended: str) -> None:
    """Slurm requeues the job (its run ended as ``ended``) and the monitor sees it."""
    core.clock.advance(30)
    core.slurm.requeue(slurm_id, ended)
    core.cycle()


def requeue_and_restart(core: Core, slurm_id: int, ended: str) -> None:
    """... and then the next run starts."""
    requeued(core, slurm_id, ended)
    core.clock.advance(30)
    core.slurm.start(slurm_id)
    core.cycle()


def driver_ended(core: Core, job_id: int, outcome: str) -> None:
    """What the batch driver records when an attempt stops at a checkpoint (end.json)."""
    current = job(core, job_id).current
    assert current is not None
    folder = layout.attempt_dir(job(core, job_id).job_dir, current.number)
    folder.mkdir(parents=True, exist_ok=True)
    layout.write_json(folder / "end.json",
                      {"attempt": current.number, "exit_code": layout.EXIT_CHECKPOINTED, "outcome": outcome})


def test_B5_job_requeued_twice_has_three_attempts_with_their_reasons_and_restart_counts(core: Core) -> None:
    job_id, slurm_id = running(core)
    requeue_and_restart(core, slurm_id, "NODE_FAIL")  # its node died: no record from the driver
    driver_ended(core, job_id, "timeout")  # the driver checkpointed before the time limit and requeued
    requeue_and_restart(core, slurm_id, "REQUEUED")
    core.slurm.end(slurm_id, "COMPLETED")
    core.cycle()
    done = job(core, job_id)
    assert done.state is JobState.COMPLETED
    assert [(a.number, a.reason.value, a.state, a.restart_count) for a in done.attempts] == [
        (1, "submit", JobState.STOPPED, 0),
        (2, "node_failure", JobState.STOPPED, 1),
        (3, "timeout", JobState.COMPLETED, 2),
    ]
    assert {a.slurm_job_id for a in done.attempts} == {slurm_id}, "one Slurm job, three runs"
    assert [a.log_path for a in done.attempts] == [f"{done.job_dir}/attempt-{n}.log" for n in (1, 2, 3)]
    assert done.counts() == {"resizes": 0, "preemptions": 0, "timeouts": 1, "failures": 1, "requeues": 0}


def test_preemption_is_a_reason_of_its_own_and_not_a_failure(core: Core) -> None:
    job_id, slurm_id = running(core)
    requeue_and_restart(core, slurm_id, "PREEMPTED")
    assert [a.reason.value for a in job(core, job_id).attempts] == ["submit", "preemption"]
    assert job(core, job_id).counts()["failures"] == 0


def test_requeue_asked_by_hpcsched_is_a_resize(core: Core) -> None:
    job_id, slurm_id = running(core)
    driver_ended(core, job_id, "requeue")
    requeue_and_restart(core, slurm_id, "REQUEUED")
    assert job(core, job_id).current.reason.value == "resize"  # type: ignore[union-attr]
    assert not core.slurm.called("sacct", f"--jobs={slurm_id}"), "the driver's record is enough: sacct not asked"


def test_requeue_seen_while_sacct_fails_is_still_an_attempt_of_its_own(core: Core) -> None:
    job_id, slurm_id = running(core)
    core.slurm.fail("sacct", timed_out=True)
    requeue_and_restart(core, slurm_id, "NODE_FAIL")
    attempts = job(core, job_id).attempts
    assert [(a.reason.value, a.restart_count) for a in attempts] == [("submit", 0), ("requeue", 1)]
    assert attempts[-1].state is JobState.RUNNING


def test_node_failures_beyond_the_limit_cancel_the_job(core: Core) -> None:
    job_id, slurm_id = running(core, max_failures=1)
    requeue_and_restart(core, slurm_id, "NODE_FAIL")
    assert job(core, job_id).state is JobState.RUNNING and not job(core, job_id).cancel_requested
    requeued(core, slurm_id, "NODE_FAIL")
    core.cycle()
    done = job(core, job_id)
    assert done.state is JobState.CANCELLED
    assert done.counts()["failures"] == 2 and done.cancel_requested
    assert core.slurm.called("scancel", str(slurm_id))
    assert ("failure_limit", "2 node failures > 1") in [(kind, detail) for _, kind, detail in core.store.events(job_id)]


def test_timeouts_and_preemptions_never_reach_the_failure_limit(core: Core) -> None:
    job_id, slurm_id = running(core, max_failures=0)
    for ended in ("PREEMPTED", "PREEMPTED"):
        requeue_and_restart(core, slurm_id, ended)
    driver_ended(core, job_id, "timeout")
    requeue_and_restart(core, slurm_id, "REQUEUED")
    assert job(core, job_id).state is JobState.RUNNING and len(job(core, job_id).attempts) == 4
    assert not core.slurm.called("scancel")


def test_shrink_asked_while_requeued_is_applied_to_the_next_run(core: Core) -> None:
    job_id, slurm_id = running(core, nodes="1-3", start_nodes=3)
    core.store.set_pending_nodes(job_id, 2)
    driver_ended(core, job_id, "requeue")
    requeue_and_restart(core, slurm_id, "REQUEUED")
    assert core.slurm.jobs[slurm_id].nodes == 2
    assert job(core, job_id).current.nodes == 2  # type: ignore[union-attr]
    assert core.store.pending_nodes(job_id) is None


def test_resize_that_slurm_refuses_on_requeue_is_recorded_and_the_job_goes_on(core: Core) -> None:
    job_id, slurm_id = running(core, nodes="1-3", start_nodes=3)
    core.store.set_pending_nodes(job_id, 2)
    core.slurm.fail("scontrol")
    requeue_and_restart(core, slurm_id, "REQUEUED")
    assert "resize_failed" in [kind for _, kind, _ in core.store.events(job_id)]
    assert job(core, job_id).state is JobState.RUNNING
