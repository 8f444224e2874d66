"""Workloads to replay: the Pollux workload files and the Philly trace.

A Pollux workload (``workloads*/workload-N.csv``) lists ``name,time,application,num_replicas,
batch_size``: when each job arrives, which model it trains, and the hand-tuned GPU count and
batch size that non-adaptive schedulers use. ``workloads-realistic/`` holds the same jobs with the
configurations users actually pick (mostly one GPU, the smallest batch); the static-realistic
policy runs those. Parsing is strict: a bad file is reported with its path, row and column.

The Philly trace (``traces/philly.csv``: submit timestamp, duration, GPUs) has no model or batch
size. :func:`philly_workload` maps each job of a time window to a sampled application (seeded)
that runs on the job's GPU count with the application's smallest batch, and scales the job's work
so that it takes exactly its recorded duration there: the trace's arrivals, sizes and run times
are kept, while adaptive policies can still resize and re-batch the jobs. The package ships the
trace gzip-compressed; any workload file whose name ends in ``.gz`` is decompressed as it is read.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from hpcsched.errors import HpcschedError

COLUMNS = ("name", "time", "application", "num_replicas", "batch_size")
PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus")


class WorkloadError(HpcschedError):
    """A workload file that cannot be read; the message names the file, row and column."""


@dataclass(frozen=True)
class JobSpec:
    """One job to replay. ``realistic`` is the user-style (GPUs, batch) configuration, if the
    workload has one. ``duration_s`` (Philly jobs) fixes the job's work instead of the
    application's: as much as it does in that time on ``num_replicas`` GPUs at batch ``M0``.
    A ``batch_size`` of 0 means the application's ``M0``. ``user`` owns the job ("": one user);
    a ``rigid`` job is a plain Slurm job, run at its submitted size (:mod:`.owners`)."""

    name: str
    submit_time: float
    application: str
    num_replicas: int
    batch_size: int
    realistic: tuple[int, int] | None = None
    duration_s: float | None = None
    user: str = ""
    rigid: bool = False


def _field(path: str, row: int, record: Mapping[str, str], column: str, kind: type[float] | type[int]) -> float:
    text = (record.get(column) or "").strip()
    try:
        value = kind(text)
    except ValueError:
        raise WorkloadError(f"{path}: row {row}, column {column!r}: expected a number, got {text!r}") from None
    if value < 0 or (kind is int and column != "time" and value < 1):
        raise WorkloadError(f"{path}: row {row}, column {column!r}: out of range: {text!r}")
    return value


def parse_workload(text: str, path: str = "<workload>", applications: Sequence[str] | None = None) -> list[JobSpec]:
    """Jobs of a Pollux workload file, sorted by submit time. Rows are numbered as in the file
    (the header is row 1)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise WorkloadError(f"{path}: row 1: missing column(s) {', '.join(missing)} (need {', '.join(COLUMNS)})")
    jobs, seen = [], set()
    for row, record in enumerate(reader, start=2):
        name, app = (record.get("name") or "").strip(), (record.get("application") or "").strip()
        if not name or name in seen:
            raise WorkloadError(f"{path}: row {row}, column 'name': empty or repeated job name {name!r}")
        if applications is not None and app not in applications:
            raise WorkloadError(f"{path}: row {row}, column 'application': unknown application {app!r}")
        seen.add(name)
        jobs.append(
            JobSpec(
                name=name,
                submit_time=_field(path, row, record, "time", float),
                application=app,
                num_replicas=int(_field(path, row, record, "num_replicas", int)),
                batch_size=int(_field(path, row, record, "batch_size", int)),
            )
        )
    if not jobs:
        raise WorkloadError(f"{path}: no jobs")
    return sorted(jobs, key=lambda j: (j.submit_time, j.name))


def with_realistic(jobs: Sequence[JobSpec], realistic: Sequence[JobSpec]) -> list[JobSpec]:
    """Attach the user-style configuration of the same-named job in ``realistic``."""
    by_name = {j.name: (j.num_replicas, j.batch_size) for j in realistic}
    return [JobSpec(**{**j.__dict__, "realistic": by_name.get(j.name, j.realistic)}) for j in jobs]


def _read_text(path: Path) -> str:
    """The text of a workload file, decompressed when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt") as f:
                return f.read()
        return path.read_text()
    except (OSError, EOFError) as e:
        raise WorkloadError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


def read_workload(path: Path, applications: Sequence[str] | None = None) -> list[JobSpec]:
    """Read a Pollux workload, or the Philly trace when the header says so. For
    ``workloads*/workload-N.csv`` the same file under ``workloads-realistic/`` supplies the
    realistic configurations when it exists."""
    text = _read_text(path)
    header = text.split("\n", 1)[0]
    if all(c in header for c in PHILLY_COLUMNS) and "application" not in header:
        return philly_workload(text, str(path), applications or ("cifar10",))
    jobs = parse_workload(text, str(path), applications)
    sibling = path.parent.parent / "workloads-realistic" / path.name
    if sibling.exists() and sibling.resolve() != path.resolve():
        jobs = with_realistic(jobs, parse_workload(sibling.read_text(), str(sibling), applications))
    return jobs


def read_philly(
    path: Path, applications: Sequence[str], start_quantile: float = 0.5, seed: int = 0, hours: float = 8.0
) -> list[JobSpec]:
    """A sample of the Philly trace at ``path`` (:func:`philly_workload`) whose window of
    ``hours`` starts at the ``start_quantile`` of its jobs by submission (0.5: the median job, the
    default window)."""
    if not 0.0 <= start_quantile < 1.0:
        raise WorkloadError(f"{path}: start quantile {start_quantile} is not in [0, 1)")
    text = _read_text(path)
    rows = max(text.count("\n", 0, len(text.rstrip("\n"))), 1)  # data rows: lines after the header
    return philly_workload(text, str(path), applications, hours=hours, start_index=int(rows * start_quantile), seed=seed)


def philly_workload(
    text: str,
    path: str,
    applications: Sequence[str],
    hours: float = 8.0,
    start_index: int | None = None,
    max_jobs: int = 160,
    max_gpus: int = 64,
    seed: int = 0,
) -> list[JobSpec]:
    """Up to ``max_jobs`` jobs (a seeded sample, arrival times kept) submitted within ``hours``
    of the ``start_index``-th earliest job (default: the median one, mid-trace), GPU counts
    capped at ``max_gpus`` (module docstring). The defaults give a load like a Pollux workload's:
    the Philly cluster had thousands of GPUs, so a whole window would swamp 64."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in PHILLY_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise WorkloadError(f"{path}: row 1: missing column(s) {', '.join(missing)}")
    rows = []
    for row, record in enumerate(reader, start=2):
        try:
            stamp = datetime.fromisoformat((record.get("timestamp") or "").strip()).timestamp()
        except ValueError:
            raise WorkloadError(f"{path}: row {row}, column 'timestamp': not a date and time") from None
        rows.append((stamp, _field(path, row, record, "duration", float), int(_field(path, row, record, "num_gpus", int))))
    rows.sort()
    first = len(rows) // 2 if start_index is None else start_index
    if not rows or first >= len(rows):
        raise WorkloadError(f"{path}: no jobs from index {first}")
    origin = rows[first][0]
    window = [r for r in rows[first:] if r[0] - origin <= hours * 3600.0 and r[1] > 0]
    rng = np.random.default_rng(seed)
    if len(window) > max_jobs:
        window = [window[i] for i in sorted(rng.choice(len(window), size=max_jobs, replace=False))]
    picks = rng.choice(len(applications), size=len(window))
    return [
        JobSpec(
            name=f"philly-{i}",
            submit_time=stamp - origin,
            application=applications[int(pick)],
            num_replicas=min(gpus, max_gpus),
            batch_size=0,
            realistic=(min(gpus, max_gpus), 0),
            duration_s=duration,
        )
        for i, ((stamp, duration, gpus), pick) in enumerate(zip(window, picks, strict=True))
    ]
