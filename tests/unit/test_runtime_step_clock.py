"""Step timing without the waits for a CPU that other processes held, and what it does for the
fitted model of a job that ran beside others (the flaky adaptive integration test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hpcsched.jobs.fitted import model_report
from hpcsched.jobs.measured import measure
from hpcsched.models import ThroughputParams, predict_step_time
from hpcsched.runtime.progress import ProgressLog
from hpcsched.runtime.step_clock import ClockReading, RunDelayReader, StepClock, StepTime, parse_run_delay, step_time


class Machine:
    """A fake monotonic clock and the training thread's run-queue wait counter."""

    def __init__(self) -> None:
        self.now, self.waited = 100.0, 3.0

    def run(self, working: float, waiting: float = 0.0) -> None:
        self.now += working + waiting
        self.waited += waiting


def test_parse_run_delay_reads_the_wait_in_seconds() -> None:
    assert parse_run_delay("72978 69162000 2\n") == pytest.approx(0.069162)


@pytest.mark.parametrize("text", ["", "1 2", "1 -2 3", "a b c", "1 2 3 4"])
def test_parse_run_delay_rejects_what_is_no_schedstat_line(text: str) -> None:
    with pytest.raises(ValueError, match="schedstat"):
        parse_run_delay(text)


def test_step_time_leaves_out_the_wait_and_never_goes_negative() -> None:
    assert step_time(ClockReading(10.0, 1.0), ClockReading(10.5, 1.3)) == StepTime(pytest.approx(0.2), pytest.approx(0.3))
    assert step_time(ClockReading(10.0, 1.0), ClockReading(10.5, 1.6)) == StepTime(0.0, 0.5)  # counters read apart
    assert step_time(ClockReading(10.0, 1.0), ClockReading(10.5, 0.9)) == StepTime(0.5, 0.0)


def test_step_clock_times_from_start_without_the_wait() -> None:
    machine = Machine()
    clock = StepClock(lambda: machine.now, lambda: machine.waited)
    machine.run(0.004, 0.010)
    clock.start()
    machine.run(0.002, 0.008)
    lap = clock.lap()
    assert lap.seconds == pytest.approx(0.002) and lap.waited == pytest.approx(0.008)


def test_without_a_wait_counter_a_step_is_its_wall_time() -> None:
    machine = Machine()
    clock = StepClock(lambda: machine.now, lambda: None)
    machine.run(0.002, 0.008)
    assert clock.lap().seconds == pytest.approx(0.010)


def test_reader_reads_a_schedstat_file_and_gives_up_for_good_on_a_bad_one(tmp_path: Path) -> None:
    stat = tmp_path / "schedstat"
    stat.write_text("5 2000000000 7\n")
    reader = RunDelayReader(stat)
    assert reader() == 2.0
    stat.write_text("5 2500000000 7\n")
    assert reader() == 2.5  # the same open file, read again
    stat.write_text("garbage\n")
    assert reader() is None
    stat.write_text("5 2500000000 7\n")
    assert reader() is None  # once unavailable, every step is wall time: the job's times stay comparable
    assert RunDelayReader(tmp_path / "missing")() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the run-queue wait is Linux's /proc")
def test_reader_reads_this_threads_wait_on_linux() -> None:
    reader = RunDelayReader()
    first = reader()
    assert first is not None and first >= 0.0
    second = reader()
    assert second is not None and second >= first
    reader.close()


# A job on one CPU process: 1.5 ms per step plus 0.02 ms per sample, the digits example's shape.
TRUE = ThroughputParams(alpha_c=1.5e-3, beta_c=2e-5, alpha_n=0.0, beta_n=0.0, alpha_r=0.0, beta_r=0.0, gamma=1.0)
# (local batch, timed steps, share of the wall time the process waited for a CPU): what the
# adaptive trial of the integration test ran, while the other trial and the daemon came and went.
RUN = [(16, 7, 0.0), (32, 6, 0.1), (75, 51, 0.6), (28, 35, 0.0), (23, 35, 0.55), (36, 72, 0.5), (56, 68, 0.3),
       (112, 62, 0.2), (58, 33, 0.4), (34, 34, 0.6)]  # fmt: skip


def progress_of_a_shared_run(path: Path) -> list[dict[str, Any]]:
    """The progress lines of RUN, timed by a StepClock on a machine that others share."""
    machine = Machine()
    clock = StepClock(lambda: machine.now, lambda: machine.waited)
    log = ProgressLog(path, attempt=1, world_size=1, min_interval_s=0.05, clock=lambda: machine.now)
    log.fields["nodes"], step = 1, 0
    for local, steps, share in RUN:
        log.global_batch = local
        log.fields.update(local_batch=local, accum_steps=0)
        working = float(predict_step_time(TRUE, 1, 1, local))
        for _ in range(steps):
            clock.start()
            machine.run(working, working * share / (1.0 - share))
            lap, step = clock.lap(), step + 1
            log.step(step=step, epoch=0, samples=step * local, loss=None, step_time=lap.seconds, cpu_wait=lap.waited)
        log.event("step", step=step, epoch=0, samples=step * local)  # as the trainer does before it switches
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_model_of_a_job_that_ran_beside_others_follows_its_step_times(tmp_path: Path) -> None:
    lines = progress_of_a_shared_run(tmp_path / "progress.jsonl")
    report = model_report(measure(lines), max_nodes=1)
    assert [f.measured.timed_steps for f in report.fits] == [s for _, s, _ in sorted(RUN)]
    assert max(abs(f.error_pct) for f in report.fits) < 1.0
    # What the same run's wall times would have given: the fit to the flaky test's noise.
    walls = [{**r, "step_time": r["step_time"] + r["cpu_wait"]} if r["step_time"] else r for r in lines]
    assert max(abs(f.error_pct) for f in model_report(measure(walls), max_nodes=1).fits) > 25.0
