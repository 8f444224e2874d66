"""Progress lines: the fields the daemon reads, rate limiting, and events that are always written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcsched.runtime.progress import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def make(tmp_path: Path, clock: Clock) -> tuple[ProgressLog, Path]:
    path = tmp_path / "progress.jsonl"
    log = ProgressLog(path, attempt=2, world_size=4, wall_clock=lambda: 1.7e9 + clock.now, clock=clock)
    log.global_batch, log.total_steps = 256, 1000
    return log, path


def test_start_line_has_every_field(tmp_path: Path) -> None:
    log, path = make(tmp_path, Clock())
    log.event("start", step=40, epoch=1, samples=10240)
    assert lines(path) == [
        {
            "time": 1.7e9 + 1000.0, "attempt": 2, "event": "start", "step": 40, "epoch": 1, "samples": 10240,
            "loss": None, "step_time": None, "timed_steps": 0, "cpu_wait": None, "world_size": 4, "global_batch": 256,
            "total_steps": 1000, "total_samples": None,
            "elastic": True,
        }
    ]  # fmt: skip


def test_step_lines_are_rate_limited_and_average_the_timed_steps_since_the_last_line(tmp_path: Path) -> None:
    clock = Clock()
    log, path = make(tmp_path, clock)
    log.event("start", step=0, epoch=0, samples=0)
    for step in range(1, 11):  # 10 steps of 0.1 s: a line at 0.5 s and at 1.0 s
        clock.now += 0.1
        untimed = step in (1, 6)  # warm-up steps the trainer does not time
        log.step(step=step, epoch=0, samples=step * 256, loss=float(step), step_time=None if untimed else 0.1 * step)
    steps = [r for r in lines(path) if r["event"] == "step"]
    assert [r["step"] for r in steps] == [5, 10]
    assert steps[0]["step_time"] == pytest.approx(0.35) and steps[0]["timed_steps"] == 4
    assert steps[1]["step_time"] == pytest.approx(0.85) and steps[1]["timed_steps"] == 4
    assert steps[0]["loss"] == pytest.approx(3.0) and steps[1]["loss"] == pytest.approx(8.0)



def test_step_lines_give_the_cpu_wait_left_out_of_their_timed_steps(tmp_path: Path) -> None:
    clock = Clock()
    log, path = make(tmp_path, clock)
    log.event("start", step=0, epoch=0, samples=0)
    for step, waited in enumerate([0.0, 0.2, 0.4, 0.0, 0.3], start=1):  # a step took 0.1 s plus its wait
        clock.now += 0.1 + waited
        log.step(step=step, epoch=0, samples=step * 256, loss=None, step_time=0.1, cpu_wait=waited)
    steps = [r for r in lines(path) if r["event"] == "step"]
    assert [(r["step"], r["timed_steps"]) for r in steps] == [(3, 3), (5, 2)]
    assert steps[0]["step_time"] == pytest.approx(0.1) and steps[0]["cpu_wait"] == pytest.approx(0.2)
    assert steps[1]["step_time"] == pytest.approx(0.1) and steps[1]["cpu_wait"] == pytest.approx(0.15)

def test_events_are_always_written(tmp_path: Path) -> None:
    clock = Clock()
    log, path = make(tmp_path, clock)
    for event in ("start", "checkpoint", "stop", "done"):
        log.event(event, step=3, epoch=0, samples=9)
    assert [r["event"] for r in lines(path)] == ["start", "checkpoint", "stop", "done"]
    with pytest.raises(ValueError, match="unknown progress event"):
        log.event("resumed", step=3, epoch=0, samples=9)


def test_non_finite_loss_is_null(tmp_path: Path) -> None:
    clock = Clock()
    log, path = make(tmp_path, clock)
    log.event("start", step=0, epoch=0, samples=0)
    clock.now += 1
    log.step(step=1, epoch=0, samples=1, loss=float("nan"))
    assert lines(path)[-1]["loss"] is None


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.write_text('{"earlier": "attempt"}\n')
    log, _ = make(tmp_path, Clock())
    log.event("start", step=0, epoch=0, samples=0)
    log.close()
    assert len(path.read_text().splitlines()) == 2


def test_without_a_path_nothing_is_written(tmp_path: Path) -> None:
    log = ProgressLog(None, attempt=1, world_size=1)
    assert log.event("start", step=0, epoch=0, samples=0) is not None
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_is_reported_once_and_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = ProgressLog(tmp_path / "missing-dir" / "progress.jsonl", attempt=1, world_size=1)
    log.event("start", step=0, epoch=0, samples=0)
    log.event("done", step=0, epoch=0, samples=0)
    assert capsys.readouterr().err.count("progress not recorded") == 1


def test_metrics_and_adapt_lines_leave_step_times_to_the_step_lines(tmp_path: Path) -> None:
    clock = Clock()
    log, path = make(tmp_path, clock)
    log.event("start", step=0, epoch=0, samples=0)
    for step in range(1, 7):  # a metrics line after every step must not hold back the step line
        clock.now += 0.1
        log.step(step=step, epoch=step, samples=step * 256, loss=None, step_time=0.1)
        log.event("metrics", step=step, epoch=step, samples=step * 256, metrics={"val_acc": step / 10})
    records = lines(path)
    assert all(r["step_time"] is None and r["timed_steps"] == 0 for r in records if r["event"] != "step")
    steps = [r for r in records if r["event"] == "step"]
    assert [(r["step"], r["timed_steps"]) for r in steps] == [(5, 5)]
    assert steps[0]["step_time"] == pytest.approx(0.1)
    assert [r["metrics"]["val_acc"] for r in records if r["event"] == "metrics"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
