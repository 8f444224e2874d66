"""Useful vs lost work from progress lines: recorded ones (a requeue that checkpointed at the stop;
eleven resizes) and synthetic ones for what a requeue without a stop checkpoint loses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcsched.report.work import attempt_work, job_work, total_steps

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"


def recorded(name: str, job: str | None = None) -> list[dict[str, Any]]:
    data = json.loads((FIXTURES / name).read_text())
    lines = data["progress"][job] if job else data["progress"]
    return [json.loads(line) for line in lines]


def line(attempt: int, event: str, step: int, time: float, **extra: Any) -> dict[str, Any]:
    return {"attempt": attempt, "event": event, "step": step, "time": time, "samples": step * 32, **extra}


def attempt_lines(attempt: int, first: int, last: int, t0: float, step_time: float = 0.1, **extra: Any) -> list[dict[str, Any]]:
    """A start line, then a step line every 10 steps."""
    out = [line(attempt, "start", first, t0, **extra)]
    out += [line(attempt, "step", s, t0 + 1 + (s - first) * step_time, **extra) for s in range(first + 10, last + 1, 10)]
    return out


def test_a_requeue_after_a_stop_checkpoint_redoes_nothing() -> None:
    """Recorded: digits_cnn requeued by scontrol at step 70; it saved at step 91 and resumed there."""
    first, second = attempt_work(recorded("sacct-report-jobs-hpcsched.json", "5"))
    assert (first.first_step, first.last_step, second.first_step, second.last_step) == (0, 91, 91, 180)
    assert first.redone_steps == second.redone_steps == 0
    assert first.kept_steps + second.kept_steps == 180
    assert first.restart_gap is None
    assert second.restart_gap == pytest.approx(40.0, abs=1.0)  # stop save, requeue hold (30 s), start-up
    assert first.throughput is not None and 400 < first.throughput < 800


def test_eleven_resizes_keep_every_step() -> None:
    records = recorded("sacct-report-resize-hpcsched.json")
    attempts = attempt_work(records)
    assert [a.attempt for a in attempts] == list(range(1, 12))
    assert sum(a.kept_steps for a in attempts) == 910 and sum(a.redone_steps for a in attempts) == 0
    assert all(a.restart_gap is not None and 5 < a.restart_gap < 15 for a in attempts[1:])
    assert total_steps(records) == 89688


def test_steps_after_the_checkpoint_a_requeue_resumed_from_are_redone() -> None:
    records = attempt_lines(1, 0, 150, 1000.0) + attempt_lines(2, 100, 200, 1100.0)
    first, second = attempt_work(records)
    assert (first.kept_steps, first.redone_steps) == (100, 50)
    assert (second.kept_steps, second.redone_steps) == (100, 0)
    assert second.restart_gap == pytest.approx((1100 + 1 + 1.0) - (1000 + 1 + 15.0))  # 1st step of #2 - last of #1
    work = job_work((first, second), {1: 2, 2: 2}, None)
    assert (work.step, work.useful_steps, work.redone_steps) == (200, 200, 50)
    assert work.busy_node_hours == pytest.approx(2 * (first.span + second.span) / 3600)
    assert work.redone_node_hours == pytest.approx(2 * first.span * 50 / 150 / 3600)
    assert work.busy_node_hours is not None and work.redone_node_hours is not None
    assert work.useful_node_hours == pytest.approx(work.busy_node_hours - work.redone_node_hours)


def test_falling_back_to_an_older_checkpoint_loses_the_work_of_every_attempt_after_it() -> None:
    records = attempt_lines(1, 0, 150, 0.0) + attempt_lines(2, 100, 130, 100.0) + attempt_lines(3, 80, 200, 200.0)
    attempts = attempt_work(records)
    assert [a.kept_steps for a in attempts] == [80, 0, 120]
    assert [a.redone_steps for a in attempts] == [70, 30, 0]


def test_goodput_is_throughput_times_reported_efficiency() -> None:
    plain = attempt_lines(1, 0, 100, 0.0)
    scaled = attempt_lines(1, 0, 100, 0.0, efficiency=0.5)
    (a,), (b,) = attempt_work(plain), attempt_work(scaled)
    assert a.throughput == pytest.approx(32 / 0.1) and a.goodput == a.throughput and a.efficiency is None
    assert b.goodput == pytest.approx(0.5 * 32 / 0.1)
    work = job_work((b,), {1: 1}, 100)
    assert work.goodput == pytest.approx(160.0) and work.efficiency == pytest.approx(0.5)
    assert job_work((a,), {1: 1}, 100).efficiency is None


def test_job_goodput_weights_attempts_by_their_time() -> None:
    records = attempt_lines(1, 0, 100, 0.0, step_time=0.1) + attempt_lines(2, 100, 200, 100.0, step_time=0.3)
    a, b = attempt_work(records)
    work = job_work((a, b), {1: 1, 2: 1}, None)
    assert work.throughput == pytest.approx((a.samples + b.samples) / (a.span + b.span))
    assert work.goodput == pytest.approx(work.throughput)


def test_an_attempt_of_unknown_size_makes_node_hours_unknown() -> None:
    work = job_work(attempt_work(attempt_lines(1, 0, 100, 0.0)), {}, None)
    assert work.busy_node_hours is None and work.useful_node_hours is None
    assert work.useful_steps == 100


def test_an_attempt_with_only_a_start_line_did_no_work() -> None:
    (a,) = attempt_work([line(1, "start", 40, 10.0)])
    assert (a.kept_steps, a.redone_steps, a.span, a.throughput) == (0, 0, 0.0, None)


def test_lines_without_attempt_or_step_are_ignored() -> None:
    assert attempt_work([{"time": 1.0, "event": "step"}, {"time": 2.0, "attempt": "x", "step": 3}]) == ()
