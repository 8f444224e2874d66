"""Sweep records (pure values and their files) and the metrics a trial's script logged."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from hpcsched.errors import HpcschedError, ValidationError
from hpcsched.jobs import sweep_store
from hpcsched.jobs.metrics import latest_metrics, metric_history
from hpcsched.jobs.sweep_record import (
    MISSING,
    NOT_SUBMITTED,
    SweepRecord,
    TrialRecord,
    metric_names,
    summary,
    trial_jobs,
    trial_status,
)


def record(name: str = "lr", created: float = 100.0) -> SweepRecord:
    trials = tuple(
        TrialRecord(i, f"{name}-{i}", {"lr": lr}, ("--epochs", "3", "--lr", lr)) for i, lr in enumerate(("0.1", "0.01", "0.001"))
    )
    return SweepRecord(
        name=name,
        created=created,
        script="/w/train.py",
        workdir="/w",
        spec={"grid": [{"name": "lr", "values": ["0.1", "0.01", "0.001"]}]},
        trials=trials,
        store_id="s1",
    )


def metrics_line(time: float, step: Any, **values: Any) -> dict[str, Any]:
    return {"event": "metrics", "time": time, "step": step, "attempt": 1, "metrics": values}


# --- metrics ----------------------------------------------------------------------------------------


def test_metric_history_keeps_metrics_lines_with_finite_numbers_only() -> None:
    lines = [
        {"event": "step", "time": 1.0, "step": 10, "loss": 0.5},
        metrics_line(2.0, 10, val_acc=0.5, val_loss=1.0),
        metrics_line(3.0, True, val_acc=float("nan"), note="text", flag=True, val_loss=0.8),
        metrics_line(4.0, 30, val_acc=math.inf),
        {"event": "metrics", "time": 5.0, "step": 40, "metrics": [1, 2]},
        {"event": "metrics", "step": 40, "metrics": {"val_acc": 1.0}},
        metrics_line(6.0, 50, val_acc=0.9),
    ]
    history = metric_history(lines)
    assert history == [
        {"time": 2.0, "step": 10, "metrics": {"val_acc": 0.5, "val_loss": 1.0}},
        {"time": 3.0, "step": None, "metrics": {"val_loss": 0.8}},
        {"time": 6.0, "step": 50, "metrics": {"val_acc": 0.9}},
    ]
    assert latest_metrics(history) == {"val_acc": 0.9, "val_loss": 0.8}
    assert latest_metrics([]) == {}


# --- record values ---------------------------------------------------------------------------------


def test_a_record_survives_its_json_form() -> None:
    rec = record().with_job(1, 42).failed("trial 2 (lr-2): sbatch failed")
    again = SweepRecord.from_dict(json.loads(json.dumps(rec.as_dict())))
    assert again == rec
    assert [t.index for t in again.submitted] == [1] and [t.index for t in again.unsubmitted] == [0, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version 2"),
        ({"name": None}, "name: missing or not a string"),
        ({"created": "yesterday"}, "created: missing or not a number"),
        ({"trials": {}}, "trials: missing or not a list"),
        ({"trials": [{"index": "0"}]}, "params: missing or not a JSON object"),
        ({"trials": [{"index": 0, "job_name": "x", "params": {"a": 1}, "args": []}]}, "trial params"),
        ({"trials": [{"index": True, "job_name": "x", "params": {}, "args": []}]}, "index: missing"),
        ({"trials": [{"index": 0, "job_name": "x", "params": {}, "args": [], "job_id": "7"}]}, "job_id"),
    ],
)
def test_a_damaged_record_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SweepRecord.from_dict({**record().as_dict(), **change})


def test_trial_status_matches_jobs_by_id_and_name_and_takes_the_latest_metrics() -> None:
    rec = record().with_job(0, 7).with_job(1, 8)
    jobs = [
        {"id": 7, "name": "lr-0", "state": "RUNNING"},
        {"id": 8, "name": "other-job", "state": "COMPLETED"},
        {"id": 9, "name": "lr-2", "state": "PENDING"},
    ]
    found = trial_jobs(rec, jobs)
    assert list(found) == [7]
    history = metric_history([metrics_line(1.0, 5, val_acc=0.4), metrics_line(2.0, 9, val_acc=0.6, val_loss=0.3)])
    rows = trial_status(rec, found, {7: history})
    assert [r["state"] for r in rows] == ["RUNNING", MISSING, NOT_SUBMITTED]
    assert rows[0]["metrics"] == {"val_acc": 0.6, "val_loss": 0.3} and rows[0]["history"] == history
    assert rows[1]["metrics"] == {} and rows[2]["job_id"] is None
    assert metric_names(rows) == ["val_acc", "val_loss"]
    assert summary(rec) == {"name": "lr", "created": 100.0, "script": "/w/train.py", "trials": 3, "submitted": 2, "error": None}


# --- record files ----------------------------------------------------------------------------------


def test_create_writes_the_record_and_refuses_an_existing_name(tmp_path: Path) -> None:
    directory = sweep_store.sweeps_dir(str(tmp_path / "state"))
    path = sweep_store.create(directory, record())
    assert path == tmp_path / "state" / "sweeps" / "lr.json"
    assert (directory.stat().st_mode & 0o777) == 0o700
    with pytest.raises(ValidationError, match=r"--name: a sweep named 'lr' exists"):
        sweep_store.create(directory, record(created=200.0))
    with pytest.raises(ValidationError, match="exists"):
        sweep_store.refuse_existing(directory, "lr")
    assert sweep_store.load(directory, "lr").created == 100.0, "the first sweep's record is kept"
    assert sorted(p.name for p in directory.iterdir()) == ["lr.json"], "no staged file is left behind"


def test_save_replaces_the_record_and_load_reads_it_back(tmp_path: Path) -> None:
    directory = tmp_path / "sweeps"
    sweep_store.create(directory, record())
    sweep_store.save(directory, record().with_job(0, 5))
    assert sweep_store.load(directory, "lr").trials[0].job_id == 5


def test_load_names_a_missing_sweep_and_a_damaged_file(tmp_path: Path) -> None:
    with pytest.raises(HpcschedError, match=r"no sweep named 'nope' \(sweep records are in "):
        sweep_store.load(tmp_path, "nope")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(HpcschedError, match=r"bad.json: not a readable sweep record"):
        sweep_store.load(tmp_path, "bad")


def test_load_all_lists_readable_records_oldest_first_and_reports_the_rest(tmp_path: Path) -> None:
    assert sweep_store.load_all(tmp_path / "none") == ([], [])
    sweep_store.create(tmp_path, record("late", created=300.0))
    sweep_store.create(tmp_path, record("early", created=100.0))
    (tmp_path / "broken.json").write_text('{"version": 1}')
    (tmp_path / ".staged.json").write_text("{")
    records, problems = sweep_store.load_all(tmp_path)
    assert [r.name for r in records] == ["early", "late"]
    assert len(problems) == 1 and "broken.json: not a readable sweep record (name: missing" in problems[0]
