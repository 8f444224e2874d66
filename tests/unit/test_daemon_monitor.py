"""The monitor over a fake Slurm: one job's error stays with that job, a failed cycle is counted
and reported, Slurm is asked a bounded number of times per cycle (H3) and less often while
nothing changes or while it fails (B4)."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeslurm import Core, FakeJob
from test_daemon_submission import block_job_dir

from hpcsched.cli.daemon import monitor_line
from hpcsched.daemon.monitor import Monitor, next_delay
from hpcsched.jobs.model import JobState
from hpcsched.slurm.client import poll_delay


@pytest.fixture
def d(tmp_path: Path) -> Core:
    return Core(tmp_path)


def monitor(d: Core) -> Monitor:
    m = Monitor(d.store, d.client, d.submitter, 5.0, clock=d.clock)
    m.health.running = True  # as in run(); these tests drive the cycles themselves
    return m


def cycle(d: Core, m: Monitor) -> int:
    """One monitor cycle at the time its next Slurm poll is due (the clock never goes back)."""
    d.clock.now = max(d.clock.now, m.due)
    return m.poll_once()


def state(d: Core, job_id: int) -> JobState:
    job = d.store.get_job(job_id)
    assert job is not None
    return job.state


def running_job(d: Core) -> tuple[int, FakeJob]:
    """A submitted job that Slurm runs: its id and Slurm's side of it."""
    job = d.submitter.submit(d.accept())
    assert job.current is not None and job.current.slurm_job_id is not None
    d.slurm.start(job.current.slurm_job_id)
    return job.id, d.slurm.jobs[job.current.slurm_job_id]


# --- isolation and health -------------------------------------------------------------------------


def test_a_batch_script_error_in_one_job_leaves_the_others_and_the_monitor_going(d: Core) -> None:
    bad, good = d.accept(), d.accept()  # committed, not yet submitted (as after a restart)
    path = block_job_dir(d, bad)
    m = monitor(d)
    cycle(d, m)
    assert state(d, bad) is JobState.FAILED
    assert state(d, good) is JobState.PENDING
    health = m.health.report(d.clock(), m.interval)
    assert health["healthy"] and health["job_errors"] == 1
    assert health["last_error"].startswith(f"job {bad}: cannot write the batch script {path}/batch.sh: the job directory")


def test_an_unreadable_job_directory_is_reported_and_the_job_still_follows_slurm(d: Core) -> None:
    job_id, fake = running_job(d)
    m = monitor(d)
    cycle(d, m)
    job = d.store.get_job(job_id)
    assert job is not None
    Path(job.job_dir).mkdir(parents=True, exist_ok=True)
    (Path(job.job_dir) / "attempts").write_text("not a directory")  # listing it raises NotADirectoryError
    d.slurm.end(fake.job_id)
    cycle(d, m)
    assert state(d, job_id) is JobState.COMPLETED
    assert m.health.job_errors >= 1 and m.health.last_error.startswith(f"job {job_id}: NotADirectoryError")


def test_failed_cycles_are_counted_and_make_the_monitor_unhealthy_until_one_succeeds(d: Core) -> None:
    running_job(d)
    m = monitor(d)
    broken = d.client.queue
    d.client.queue = lambda: [][0]  # type: ignore[method-assign]  # a bug: IndexError
    for _ in range(3):
        assert cycle(d, m) == 0
    health = m.health.report(d.clock(), m.interval)
    assert not health["healthy"] and health["problems"] == ["3 cycles in a row failed"]
    assert health["last_error"] == "IndexError: list index out of range"
    d.client.queue = broken  # type: ignore[method-assign]
    cycle(d, m)
    assert m.health.report(d.clock(), m.interval)["healthy"]


def test_no_successful_cycle_for_three_long_waits_is_unhealthy(d: Core) -> None:
    m = monitor(d)
    cycle(d, m)
    d.clock.advance(181)
    assert m.health.report(d.clock(), m.interval)["problems"] == ["no successful cycle for 181 s"]


def test_the_thread_goes_on_after_failed_cycles_and_reports_when_it_stopped(d: Core) -> None:
    running_job(d)
    ticks = itertools.count(1000.0, 0.5)  # each reading of the clock moves it on
    m = Monitor(d.store, d.client, d.submitter, 0.001, clock=lambda: next(ticks))
    stop = threading.Event()
    cycles = []

    def failing_queue() -> list[object]:
        cycles.append(1)
        if len(cycles) == 3:
            stop.set()
        raise OSError(5, "Input/output error")

    d.client.queue = failing_queue  # type: ignore[assignment]
    m.run(stop)
    assert len(cycles) == 3 and m.health.failures == 3
    assert "the monitor thread is not running" in m.health.report(d.clock(), m.interval)["problems"]


def test_daemon_status_line_says_unhealthy_and_why() -> None:
    health = {"healthy": False, "problems": ["3 cycles in a row failed"], "last_cycle": 100.0,
              "consecutive_failures": 3, "last_error": "Slurm did not answer: squeue failed"}
    assert monitor_line(health, 130.0) == ("UNHEALTHY (3 cycles in a row failed), last cycle 00:00:30 ago, "
                                           "3 failed in a row, last error: Slurm did not answer: squeue failed")


# --- B4: Slurm fails ------------------------------------------------------------------------------


def test_B4_squeue_failing_keeps_states_and_backs_off(d: Core) -> None:
    job_id, _ = running_job(d)
    m = monitor(d)
    cycle(d, m)
    d.slurm.down = {"squeue"}
    delays = []
    for _ in range(5):
        cycle(d, m)
        delays.append(m.next_delay())
    assert state(d, job_id) is JobState.RUNNING
    assert delays == [10.0, 20.0, 40.0, 60.0, 60.0]
    asked = len(d.slurm.called("squeue"))
    m.poll_once()  # a cycle before the wait is over
    assert len(d.slurm.called("squeue")) == asked, "a failing Slurm is not asked again before the wait is over"


def test_B4_sacct_failing_keeps_a_job_gone_from_squeue_unfinished(d: Core) -> None:
    job_id, fake = running_job(d)
    m = monitor(d)
    cycle(d, m)
    d.slurm.end(fake.job_id)  # gone from squeue
    d.slurm.down = {"sacct"}
    cycle(d, m)
    assert state(d, job_id) is JobState.RUNNING and m.health.failures == 1
    d.slurm.down = set()
    cycle(d, m)
    assert state(d, job_id) is JobState.COMPLETED and m.health.failures == 0


# --- cadence and H3 ---------------------------------------------------------------------------------


def test_polling_backs_off_while_nothing_changes_and_resets_on_a_change(d: Core) -> None:
    _, fake = running_job(d)
    m = monitor(d)
    delays = []
    for _ in range(7):
        cycle(d, m)
        delays.append(m.next_delay())
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    d.slurm.end(fake.job_id)
    cycle(d, m)
    assert m.next_delay() == 5.0


def test_files_are_read_every_cycle_and_a_reported_end_asks_slurm_at_once(d: Core) -> None:
    job_id, fake = running_job(d)
    m = monitor(d)
    for _ in range(4):
        cycle(d, m)  # nothing changes: Slurm is next asked 40 s later
    job = d.store.get_job(job_id)
    assert job is not None and m.due > d.clock()
    Path(job.job_dir).mkdir(parents=True, exist_ok=True)
    (Path(job.job_dir) / "progress.jsonl").write_text(
        json.dumps({"event": "step", "attempt": 1, "step": 7, "time": 1.0}) + "\n")
    asked = len(d.slurm.called("squeue"))
    m.poll_once()
    progressed = d.store.get_job(job_id)
    assert progressed is not None and progressed.progress is not None and progressed.progress["step"] == 7
    assert len(d.slurm.called("squeue")) == asked, "a progress line is read without asking Slurm"
    end = Path(job.job_dir) / "attempts" / "1"
    end.mkdir(parents=True)
    (end / "end.json").write_text(json.dumps({"outcome": "completed", "exit_code": 0, "end_time": 1005.0}))
    d.slurm.end(fake.job_id)
    m.poll_once()
    assert state(d, job_id) is JobState.COMPLETED, "the job's own end record makes the monitor ask Slurm now"


def test_idle_backoff_is_at_most_twelve_intervals_and_never_below_one() -> None:
    assert [next_delay(1.0, 0, q) for q in range(6)] == [1.0, 2.0, 4.0, 8.0, 12.0, 12.0]
    assert next_delay(120.0, 0, 5) == 120.0


def test_takeover_polls_back_off_from_one_to_ten_seconds() -> None:
    assert [poll_delay(1.0, 10.0, n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.fixture
def big(tmp_path: Path) -> Iterator[Core]:
    """A daemon whose store is in memory-backed storage when there is some: 20,000 synced
    transactions on a disk shared with other work take minutes, and they are not what is tested."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as store_dir:
        yield Core(tmp_path, store_dir=Path(store_dir))


def test_H3_slurm_calls_per_cycle_do_not_grow_with_10000_jobs(big: Core) -> None:
    d = big
    for _ in range(10_000):
        job_id = d.accept()
        slurm_id = d.slurm.queue(d.tag(job_id), state="RUNNING")
        d.store.update_attempt(job_id, 1, d.clock(), slurm_job_id=slurm_id, state=JobState.RUNNING)
    for slurm_id in list(d.slurm.jobs)[::2]:
        d.slurm.end(slurm_id)  # half of them gone from squeue: sacct is asked about those
    m = monitor(d)
    for _ in range(2):
        d.slurm.calls.clear()
        cycle(d, m)
        assert len(d.slurm.called("squeue")) == 1 and len(d.slurm.called("sacct")) <= 1
        assert len(d.slurm.calls) <= 3, d.slurm.calls
    assert len(d.store.open_jobs()) == 5_000
