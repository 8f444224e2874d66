"""The report window: --since/--until values, and which jobs a window covers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from hpcsched.errors import ValidationError
from hpcsched.report.values import Window
from hpcsched.report.window import accounting_start, make_window, parse_when, select_jobs

NOW = 1_795_804_949.0


@pytest.mark.parametrize(("text", "ago"), [("7d", 7 * 86400), ("24h", 86400), ("30m", 1800), ("90s", 90),
                                           ("1d12h", 36 * 3600), ("2w", 14 * 86400), ("1.5h", 5400), ("now", 0)])
def test_ages(text: str, ago: float) -> None:
    assert parse_when(text, NOW) == NOW - ago


@pytest.mark.parametrize("text", ["2026-11-27", "2026-11-27T10:00", "2026-11-27 10:00:30", "2026-11-27T10:00:00+01:00"])
def test_dates_and_times_are_local_unless_they_say_otherwise(text: str) -> None:
    assert parse_when(text, NOW) == datetime.fromisoformat(text).timestamp()


def test_a_date_is_local_midnight() -> None:
    assert parse_when("2026-11-27", NOW) == datetime(2026, 11, 27).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "7x", "-3d", "2026-13-01", ""])
def test_anything_else_names_the_option(text: str) -> None:
    with pytest.raises(ValidationError, match="--until"):
        parse_when(text, NOW, "--until")


def test_window_until_now_is_open_and_must_not_end_before_it_starts() -> None:
    assert make_window("1d", "now", NOW) == Window(since=NOW - 86400, until=None)
    assert make_window("2d", "1d", NOW) == Window(since=NOW - 2 * 86400, until=NOW - 86400)
    with pytest.raises(ValidationError, match="--until"):
        make_window("1d", "2d", NOW)


def job(job_id: int, created: float, state: str = "COMPLETED", end: float | None = None, user: str = "alice") -> dict[str, Any]:
    return {"id": job_id, "user": user, "state": state, "created": created,
            "attempts": [{"number": 1, "submit_time": created, "start_time": created + 1, "end_time": end}]}


JOBS = [
    job(1, NOW - 10 * 86400, end=NOW - 9 * 86400),  # finished before the window
    job(2, NOW - 10 * 86400, end=NOW - 2 * 86400),  # started before, ended inside
    job(3, NOW - 10 * 86400, state="RUNNING"),  # still running
    job(4, NOW - 3600, end=NOW - 60, user="bob"),
    job(5, NOW - 3600, state="PENDING"),
]


def test_jobs_active_in_the_window_are_covered() -> None:
    week = Window(since=NOW - 7 * 86400)
    assert [j["id"] for j in select_jobs(JOBS, week, NOW)] == [2, 3, 4, 5]
    assert [j["id"] for j in select_jobs(JOBS, week, NOW, user="alice")] == [2, 3, 5]
    earlier = Window(since=NOW - 11 * 86400, until=NOW - 5 * 86400)
    assert [j["id"] for j in select_jobs(JOBS, earlier, NOW)] == [1, 2, 3]


def test_named_jobs_are_covered_whatever_the_window() -> None:
    assert [j["id"] for j in select_jobs(JOBS, Window(since=NOW), NOW, job_ids=(4, 1))] == [1, 4]


def test_accounting_starts_early_enough_for_every_run_of_a_covered_job() -> None:
    assert accounting_start(JOBS[1:3], Window(since=NOW - 86400)) == NOW - 10 * 86400 - 60
    assert accounting_start([], Window(since=NOW - 86400)) == NOW - 86400 - 60
