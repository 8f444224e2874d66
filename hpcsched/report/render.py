"""A report as text: a table for people, CSV (one row per attempt) and JSON for programs.

Unknown values print as ``?`` in the table, as empty cells in CSV and as ``null`` in JSON.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from hpcsched.cli.common import format_duration
from hpcsched.report.values import AttemptRow, JobReport, Report, Totals

UNKNOWN = "?"


def to_json(report: Report) -> str:
    """One line: with tens of thousands of attempts an indented dump takes seconds (``jq .`` indents)."""
    return json.dumps(report_dict(report), separators=(",", ":"), sort_keys=True) + "\n"


def report_dict(report: Report) -> dict[str, Any]:
    data = _plain(report)
    assert isinstance(data, dict)
    data["accounting"] = {"available": report.accounting_error is None, "error": data.pop("accounting_error")}
    for totals, values in zip((*report.users, report.cluster), (*data["users"], data["cluster"]), strict=True):
        values["lost_node_hours"] = totals.lost_node_hours
    return data


def _plain(value: Any) -> Any:
    """Dataclasses as dicts and tuples as lists; like ``dataclasses.asdict`` without its deep copies."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


CSV_COLUMNS = (
    "job_id", "job_name", "user", "job_state", "attempt", "reason", "attempt_state", "slurm_job_id", "slurm_state",
    "exit_code", "nodes", "node_list", "submit_time", "start_time", "end_time", "queue_wait_s", "elapsed_s",
    "node_hours", "cpu_hours", "gpu_hours", "first_step", "last_step", "kept_steps", "redone_steps",
    "restart_gap_s", "throughput", "efficiency",
)


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for job in report.jobs:
        for row in job.attempts:
            writer.writerow(["" if v is None else v for v in _csv_row(job, row)])
    return out.getvalue()


def _csv_row(job: JobReport, row: AttemptRow) -> list[Any]:
    u, w = row.usage, row.work
    run = {name: None if u is None else getattr(u, name) for name in (
        "slurm_state", "exit_code", "node_list", "submit_time", "start_time", "end_time", "queue_wait", "elapsed",
        "node_hours", "cpu_hours", "gpu_hours")}
    done = {name: None if w is None else getattr(w, name) for name in (
        "first_step", "last_step", "kept_steps", "redone_steps", "restart_gap", "throughput", "efficiency")}
    return [
        job.id, job.name, job.user, job.state, row.number, row.reason, row.state, row.slurm_job_id,
        run["slurm_state"], run["exit_code"], u.nodes if u else row.requested_nodes, run["node_list"],
        _iso(run["submit_time"]), _iso(run["start_time"]), _iso(run["end_time"]),
        _round(run["queue_wait"]), _round(run["elapsed"]), _round(run["node_hours"], 6),
        _round(run["cpu_hours"], 6), _round(run["gpu_hours"], 6),
        done["first_step"], done["last_step"], done["kept_steps"], done["redone_steps"],
        _round(done["restart_gap"]), _round(done["throughput"]), _round(done["efficiency"], 4),
    ]


def write_table(report: Report, file: TextIO) -> None:
    """Plain aligned columns: a rich Table takes seconds per ten thousand rows, this milliseconds."""
    lines = [_window_line(report)]
    if report.jobs:
        lines += _aligned(JOB_COLUMNS, job_rows(report))
        lines.append("")
        lines += _aligned(TOTALS_COLUMNS, [_totals_cells(t) for t in (*report.users, report.cluster)])
        lines += notes(report)
    else:
        lines.append("no jobs")
    file.write("\n".join(lines) + "\n")


JOB_COLUMNS = ("ID", "NAME", "USER", "STATE", "SLURM", "WAIT", "RUN", "NODES", "NODE-H", "CPU-H", "GPU-H",
               "STEPS", "REDONE", "RESTART", "BUSY", "USEFUL", "GOODPUT")
TOTALS_COLUMNS = ("USER", "JOBS", "ATTEMPTS", "MEAN-WAIT", "RUN", "NODE-H", "CPU-H", "GPU-H", "MEASURED-H",
                  "BUSY-H", "USEFUL-H", "LOST-H", "BUSY", "USEFUL")
LEFT = frozenset({"ID", "NAME", "USER", "STATE", "SLURM"})


def job_rows(report: Report) -> list[list[str]]:
    """A row per job and, under a job with several attempts, a row per attempt."""
    rows = []
    for job in report.jobs:
        w = job.work
        rows.append([
            str(job.id), job.name, job.user, job.state, _slurm_text(job, job.slurm_state), _duration(job.queue_wait),
            _duration(job.run_time), _slurm_text(job, job.nodes), _hours(job.node_hours), _hours(job.cpu_hours),
            _hours(job.gpu_hours), _steps(job), _text(w.redone_steps if w else "-"),
            _duration(w.restart_seconds) if w else "-", _percent(job.utilisation, w is not None),
            _percent(job.useful_share, w is not None), _rate(w.goodput) if w else "-",
        ])
        if len(job.attempts) > 1:
            rows.extend(list(_attempt_cells(row, job.accounting == "ok")) for row in job.attempts)
    return rows


def _attempt_cells(row: AttemptRow, accounted: bool) -> Iterator[str]:
    """With complete accounting, an attempt without a run never started: its Slurm cells do not apply."""
    u, w = row.usage, row.work
    missing = "-" if accounted else UNKNOWN
    label = f"#{row.number} {row.reason}" if row.number is not None else "(run not recorded by hpcsched)"
    yield from ("", f"  {label}", "", row.state, u.slurm_state if u else missing)
    yield from (_duration(u.queue_wait), _duration(u.elapsed), str(u.nodes)) if u else (missing,) * 3
    yield from (_hours(u.node_hours), _hours(u.cpu_hours), _hours(u.gpu_hours)) if u else (missing,) * 3
    yield f"{w.first_step}-{w.last_step}" if w else "-"
    yield str(w.redone_steps) if w else "-"
    yield _duration(w.restart_gap) if w and w.restart_gap is not None else "-"
    yield from ("", "", _rate(w.goodput) if w else "-")


def _totals_cells(t: Totals) -> list[str]:
    applies = t.measured_node_hours != 0.0  # no job reports progress: the ratios do not apply
    return [
        t.name, str(t.jobs), str(t.attempts), _duration(t.mean_queue_wait), _duration(t.run_time),
        _hours(t.node_hours), _hours(t.cpu_hours), _hours(t.gpu_hours), _hours(t.measured_node_hours),
        _hours(t.busy_node_hours), _hours(t.useful_node_hours), _hours(t.lost_node_hours),
        _percent(t.utilisation, applies), _percent(t.useful_share, applies),
    ]


def _aligned(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    out = []
    for row in (columns, *rows):
        cells = [v.ljust(w) if c in LEFT else v.rjust(w) for c, v, w in zip(columns, row, widths, strict=True)]
        out.append("  ".join(cells).rstrip())
    return out


def notes(report: Report) -> list[str]:
    out = []
    if report.accounting_error is not None:
        out.append(f"{UNKNOWN} = unknown: Slurm accounting could not be read ({report.accounting_error})")
    incomplete = [str(j.id) for j in report.jobs if j.accounting == "incomplete"]
    if incomplete:
        out.append(f"{UNKNOWN} = unknown: runs of job {', '.join(incomplete)} are missing from Slurm accounting")
    return out


def _window_line(report: Report) -> str:
    until = "now" if report.window.until is None else _local(report.window.until)
    return f"jobs active from {_local(report.window.since)} to {until}"


def _steps(job: JobReport) -> str:
    w = job.work
    if w is None:
        return "-"
    return f"{w.step}/{w.total_steps}" if w.total_steps else str(w.step)


def _text(value: object) -> str:
    return UNKNOWN if value is None else str(value)


def _slurm_text(job: JobReport, value: object) -> str:
    """A value from Slurm that is None with complete accounting only when the job never ran."""
    if value is None and job.accounting == "ok":
        return "-"
    return _text(value)


def _duration(seconds: float | None) -> str:
    return UNKNOWN if seconds is None else format_duration(seconds)


def _hours(value: float | None) -> str:
    if value is None:
        return UNKNOWN
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _percent(value: float | None, applies: bool = True) -> str:
    if not applies:
        return "-"
    return UNKNOWN if value is None else f"{100 * value:.0f}%"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _round(value: float | int | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")
