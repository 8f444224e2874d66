"""The report as CSV, JSON and a table, with and without Slurm accounting; and host lists."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from hpcsched.jobs.progress import parse_lines
from hpcsched.report import Report, Window, build_report
from hpcsched.report.render import CSV_COLUMNS, to_csv, to_json, write_table
from hpcsched.report.sacct import merge_runs
from hpcsched.slurm.hostlist import expand
from hpcsched.slurm.parse import parse_sacct

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"
SACCT = (FIXTURES / "sacct-report-jobs.json").read_text()
HPCSCHED = json.loads((FIXTURES / "sacct-report-jobs-hpcsched.json").read_text())


def report(with_accounting: bool = True) -> Report:
    runs = merge_runs(parse_sacct(SACCT), SACCT) if with_accounting else None
    progress = {int(k): parse_lines("\n".join(v)) for k, v in HPCSCHED["progress"].items()}
    error = None if with_accounting else "sacct failed: exit 1"
    return build_report(HPCSCHED["status"], runs, progress, HPCSCHED["recorded"], window=Window(HPCSCHED["recorded"] - 3600),
                        store_id=HPCSCHED["daemon"]["store_id"], accounting_error=error)


def test_csv_has_one_row_per_attempt() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(report()))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["job_name"], r["attempt"], r["reason"], r["slurm_state"]) for r in rows] == [
        ("ok", "1", "submit", "COMPLETED"), ("fail", "1", "submit", "FAILED"), ("cancelled", "1", "submit", "CANCELLED"),
        ("requeued", "1", "submit", "REQUEUED"), ("requeued", "2", "requeue", "COMPLETED"),
        ("digits", "1", "submit", "REQUEUED"), ("digits", "2", "requeue", "COMPLETED")]
    ok = rows[0]
    assert (ok["elapsed_s"], ok["nodes"], ok["node_list"], ok["start_time"][:10]) == ("10.0", "1", "node1", "2026-11-27")
    assert rows[1]["exit_code"] == ""  # unknown (sacct 22.05), not 0
    assert (rows[6]["first_step"], rows[6]["last_step"], rows[6]["redone_steps"]) == ("91", "180", "0")


def test_csv_without_accounting_leaves_slurm_cells_empty() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(report(False)))))
    assert all(r[c] == "" for r in rows for c in ("slurm_state", "elapsed_s", "node_hours", "queue_wait_s"))
    assert rows[6]["last_step"] == "180" and rows[4]["reason"] == "requeue"


def test_json_says_whether_accounting_was_read() -> None:
    data = json.loads(to_json(report()))
    assert data["accounting"] == {"available": True, "error": None}
    assert [j["name"] for j in data["jobs"]] == ["ok", "fail", "cancelled", "requeued", "digits"]
    assert data["cluster"]["lost_node_hours"] == pytest.approx(
        data["cluster"]["measured_node_hours"] - data["cluster"]["useful_node_hours"])
    missing = json.loads(to_json(report(False)))
    assert missing["accounting"] == {"available": False, "error": "sacct failed: exit 1"}
    assert missing["jobs"][0]["node_hours"] is None and missing["jobs"][0]["state"] == "COMPLETED"


def table(r: Report) -> str:
    out = io.StringIO()
    write_table(r, out)
    return out.getvalue()


def test_table_lists_jobs_their_attempts_and_totals() -> None:
    text = table(report())
    lines = text.splitlines()
    assert lines[0].startswith("jobs active from ")
    assert any(line.split()[:4] == ["4", "requeued", "hpcuser", "COMPLETED"] for line in lines)
    assert any("#2 requeue" in line and "COMPLETED" in line for line in lines)
    assert any(line.split()[:1] == ["all"] for line in lines)
    assert "?" not in text


def test_table_marks_slurm_values_unknown_and_says_why() -> None:
    text = table(report(False))
    ok = next(line for line in text.splitlines() if line.split()[:2] == ["1", "ok"])
    assert ok.split()[4:11] == ["?"] * 7
    assert text.splitlines()[-1] == "? = unknown: Slurm accounting could not be read (sacct failed: exit 1)"


@pytest.mark.parametrize(("hostlist", "names"), [
    ("node1", ["node1"]),
    ("node[1-3]", ["node1", "node2", "node3"]),
    ("node[1,3],gpu[08-10]", ["node1", "node3", "gpu08", "gpu09", "gpu10"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("a,b", ["a", "b"]),
    ("", []),
])
def test_hostlists_expand_in_slurms_order(hostlist: str, names: list[str]) -> None:
    assert expand(hostlist) == names
