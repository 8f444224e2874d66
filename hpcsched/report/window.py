"""The report's time window and which jobs it covers (pure: ``now`` is passed in).

``--since`` and ``--until`` take a date (``2026-11-27``, local midnight), a local date and time
(``2026-11-27T10:00``, ``2026-11-27 10:00:30``, an ISO offset is honoured), an age (``7d``,
``24h``, ``90m``, ``1d12h``; units s, m, h, d, w) or ``now``. A job is covered when it was
active at some time in the window: created before its end, and not finished before its start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from hpcsched.errors import ValidationError
from hpcsched.jobs.model import FINAL_STATES
from hpcsched.report.values import Window

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
AGE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
FINAL = frozenset(state.value for state in FINAL_STATES)


def parse_when(text: str, now: float, option: str = "--since") -> float:
    """Seconds since the epoch for one ``--since``/``--until`` value."""
    value = text.strip().lower()
    if value == "now":
        return now
    if AGE.fullmatch(value):
        return now - sum(float(n) * UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", value))
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValidationError(option, f"{text!r} is not a date (2026-11-27), a time (2026-11-27T10:00), "
                                      "an age (7d, 24h, 30m) or 'now'") from None


def make_window(since: str, until: str, now: float) -> Window:
    start = parse_when(since, now, "--since")
    end = parse_when(until, now, "--until")
    if end < start:
        raise ValidationError("--until", f"{until!r} is before --since {since!r}")
    return Window(since=start, until=None if until.strip().lower() == "now" else end)


def select_jobs(jobs: Iterable[Mapping[str, Any]], window: Window, now: float, user: str | None = None,
                job_ids: Sequence[int] = ()) -> list[Mapping[str, Any]]:
    """The jobs the report covers, by id. Named jobs are covered whatever the window."""
    if job_ids:
        wanted = set(job_ids)
        return sorted((j for j in jobs if int(j["id"]) in wanted), key=lambda j: int(j["id"]))
    until = window.until if window.until is not None else now
    chosen = [j for j in jobs if (user is None or j.get("user") == user) and _active(j, window.since, until, now)]
    return sorted(chosen, key=lambda j: int(j["id"]))


def _active(job: Mapping[str, Any], since: float, until: float, now: float) -> bool:
    created = float(job["created"])
    if created > until:
        return False
    if str(job.get("state")) not in FINAL:
        return True
    return last_activity(job, now) >= since


def last_activity(job: Mapping[str, Any], now: float) -> float:
    """The latest time hpcsched recorded for the job: created, or an attempt's submit, start or end."""
    times = [float(job["created"])]
    for a in job.get("attempts") or ():
        times.extend(float(a[k]) for k in ("submit_time", "start_time", "end_time") if isinstance(a.get(k), (int, float)))
    return min(max(times), now)


def accounting_start(jobs: Iterable[Mapping[str, Any]], window: Window, slack: float = 60.0) -> float:
    """sacct's ``--starttime``: early enough for every run of every covered job, so that a job is
    reported whole, not just its runs inside the window."""
    return min([window.since, *(float(j["created"]) for j in jobs)]) - slack
