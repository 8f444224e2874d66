"""B4: while squeue or sacct fail or time out, the monitor keeps every state as it was (a job is
never shown COMPLETED on a guess), logs each failure, waits longer before asking again, and
catches up at once when Slurm answers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fakeslurm import Core

from hpcsched.jobs.model import JobState


@pytest.mark.parametrize("timed_out", [False, True], ids=["exit-1", "timeout"])
def test_B4_squeue_failing_keeps_the_state_backs_off_and_never_shows_completed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, timed_out: bool) -> None:
    core = Core(tmp_path)
    job_id, slurm_id = core.submit()
    core.slurm.start(slurm_id)
    core.cycle()
    core.slurm.end(slurm_id, "COMPLETED")  # the job ends while Slurm cannot be asked
    core.slurm.fail("squeue", times=4, timed_out=timed_out)
    seen, waits = [], []
    with caplog.at_level(logging.WARNING, logger="hpcsched.daemon.monitor"):
        for _ in range(4):
            core.cycle()
            seen.append(core.store.get_job(job_id).state)  # type: ignore[union-attr]
            waits.append(core.monitor.next_delay())
    assert seen == [JobState.RUNNING] * 4
    assert waits == [10.0, 20.0, 40.0, 60.0]
    assert sum("states kept" in r.getMessage() for r in caplog.records) == 4
    assert core.monitor.health.report(core.clock(), 5.0)["healthy"] is False
    core.cycle()  # Slurm answers again
    assert core.store.get_job(job_id).state is JobState.COMPLETED  # type: ignore[union-attr]
    assert core.monitor.health.failures == 0 and core.monitor.next_delay() == 5.0


def test_B4_a_job_gone_from_squeue_stays_unfinished_until_sacct_says_how_it_ended(tmp_path: Path) -> None:
    core = Core(tmp_path)
    job_id, slurm_id = core.submit()
    core.slurm.start(slurm_id)
    core.cycle()
    core.slurm.end(slurm_id, "FAILED")
    core.slurm.fail("sacct", times=3, timed_out=True)
    for _ in range(3):
        core.cycle()
        assert core.store.get_job(job_id).state is JobState.RUNNING  # type: ignore[union-attr]
    core.cycle()
    assert core.store.get_job(job_id).state is JobState.FAILED  # type: ignore[union-attr]
