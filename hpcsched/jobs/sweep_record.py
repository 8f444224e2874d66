"""The record of a sweep (pure): what was searched, and which hpcsched job runs each trial.

A record is written before the first trial is submitted and again after each one, so a sweep
that fails midway still says which trials run as which jobs. Trials without a job id were never
submitted. Job ids are those of the daemon whose store is ``store_id``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hpcsched.jobs.metrics import latest_metrics

RECORD_VERSION = 1
NOT_SUBMITTED = "NOT_SUBMITTED"
MISSING = "MISSING"  # the daemon knows no job of this id and name


@dataclass(frozen=True)
class TrialRecord:
    index: int
    job_name: str
    params: Mapping[str, str]
    args: tuple[str, ...]
    job_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "job_name": self.job_name,
            "params": dict(self.params),
            "args": list(self.args),
            "job_id": self.job_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> TrialRecord:
        data = _object(data, "trial")
        params = _field(data, "params", dict)
        args = _field(data, "args", list)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
            raise ValueError("trial params: expected strings")
        if not all(isinstance(a, str) for a in args):
            raise ValueError("trial args: expected strings")
        return cls(
            index=_field(data, "index", int),
            job_name=_field(data, "job_name", str),
            params=MappingProxyType(dict(params)),
            args=tuple(args),
            job_id=_optional(data, "job_id", int),
        )


@dataclass(frozen=True)
class SweepRecord:
    name: str
    created: float
    script: str
    workdir: str
    spec: Mapping[str, Any]
    trials: tuple[TrialRecord, ...]
    store_id: str | None = None
    error: str | None = None  # why submitting stopped midway

    @property
    def submitted(self) -> tuple[TrialRecord, ...]:
        return tuple(t for t in self.trials if t.job_id is not None)

    @property
    def unsubmitted(self) -> tuple[TrialRecord, ...]:
        return tuple(t for t in self.trials if t.job_id is None)

    def with_job(self, index: int, job_id: int) -> SweepRecord:
        trials = tuple(dataclasses.replace(t, job_id=job_id) if t.index == index else t for t in self.trials)
        return dataclasses.replace(self, trials=trials)

    def failed(self, error: str) -> SweepRecord:
        return dataclasses.replace(self, error=error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "name": self.name,
            "created": self.created,
            "script": self.script,
            "workdir": self.workdir,
            "spec": dict(self.spec),
            "store_id": self.store_id,
            "error": self.error,
            "trials": [t.as_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, data: Any) -> SweepRecord:
        """Raises ValueError naming the first field that is missing or of the wrong type."""
        data = _object(data, "record")
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"version {data.get('version')!r}; this hpcsched reads version {RECORD_VERSION}")
        return cls(
            name=_field(data, "name", str),
            created=float(_field(data, "created", (int, float))),
            script=_field(data, "script", str),
            workdir=_field(data, "workdir", str),
            spec=MappingProxyType(dict(_field(data, "spec", dict))),
            trials=tuple(TrialRecord.from_dict(t) for t in _field(data, "trials", list)),
            store_id=_optional(data, "store_id", str),
            error=_optional(data, "error", str),
        )


def trial_jobs(record: SweepRecord, jobs: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """The daemon's jobs (``status`` objects) that run this sweep's trials, by id. A job of a
    trial's id but another name belongs to another daemon's store, not to this sweep."""
    names = {t.job_id: t.job_name for t in record.submitted}
    return {int(j["id"]): j for j in jobs if j.get("id") in names and j.get("name") == names[j["id"]]}


def trial_status(
    record: SweepRecord, jobs: Mapping[int, Mapping[str, Any]], histories: Mapping[int, Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """One row per trial: the record's trial, its job's state, its metric history (from
    :func:`hpcsched.jobs.metrics.metric_history`) and the latest value of each metric.
    ``jobs`` is what :func:`trial_jobs` found; a submitted trial without a job there is MISSING."""
    rows = []
    for trial in record.trials:
        job = jobs.get(trial.job_id) if trial.job_id is not None else None
        state = NOT_SUBMITTED if trial.job_id is None else MISSING if job is None else str(job["state"])
        history = list(histories.get(trial.job_id, ())) if trial.job_id is not None else []
        rows.append({**trial.as_dict(), "state": state, "metrics": latest_metrics(history), "history": history})
    return rows


def metric_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every metric name any trial reported, sorted: the status table's metric columns."""
    return sorted({name for row in rows for name in row["metrics"]})


def summary(record: SweepRecord) -> dict[str, Any]:
    """What ``hpcsched sweep list`` shows of a record."""
    return {
        "name": record.name,
        "created": record.created,
        "script": record.script,
        "trials": len(record.trials),
        "submitted": len(record.submitted),
        "error": record.error,
    }


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a JSON object")
    return data


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key}: missing or not a {_kind_name(kind)}")
    return value


def _optional(data: Mapping[str, Any], key: str, kind: type) -> Any:
    return None if data.get(key) is None else _field(data, key, kind)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return "number"  # (int, float)
    return {str: "string", int: "whole number", list: "list", dict: "JSON object"}[kind]
