"""Sweep records on disk: ``<state_dir>/sweeps/<name>.json``.

They live in the state directory, next to the daemon's store, because the job ids in them are
that store's. Each write is whole (write-new, fsync, rename: :func:`hpcsched.jobs.layout.write_json`).
A new record is put in place with a hard link, which fails when the name exists, so a new sweep
never replaces an earlier sweep's record, not even one created at the same moment.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from hpcsched.errors import HpcschedError, ValidationError
from hpcsched.jobs.layout import write_json
from hpcsched.jobs.sweep_record import SweepRecord


def sweeps_dir(state_dir: str) -> Path:
    return Path(state_dir) / "sweeps"


def record_path(directory: Path, name: str) -> Path:
    """The record's file; ``name`` must be a validated sweep name (no '/', no leading '.')."""
    return directory / f"{name}.json"


def refuse_existing(directory: Path, name: str) -> None:
    if os.path.lexists(record_path(directory, name)):
        raise ValidationError("--name", f"a sweep named {name!r} exists ({record_path(directory, name)}); choose another name")


def create(directory: Path, record: SweepRecord) -> Path:
    """Write a new sweep's record; refuses a name that exists."""
    path = record_path(directory, record.name)
    staged = directory / f".{record.name}.{os.getpid()}.new"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(staged, record.as_dict())
        os.link(staged, path)
    except OSError as e:
        if isinstance(e, FileExistsError) and os.path.lexists(path):
            refuse_existing(directory, record.name)
        raise _unwritable(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            staged.unlink()
    return path


def save(directory: Path, record: SweepRecord) -> Path:
    """Replace the record of a sweep (after each submitted trial)."""
    path = record_path(directory, record.name)
    try:
        write_json(path, record.as_dict())
    except OSError as e:
        raise _unwritable(path, e) from None
    return path


def load(directory: Path, name: str) -> SweepRecord:
    path = record_path(directory, name)
    try:
        return _read(path)
    except FileNotFoundError:
        raise HpcschedError(f"no sweep named {name!r} (sweep records are in {directory})") from None


def load_all(directory: Path) -> tuple[list[SweepRecord], list[str]]:
    """Every readable record, oldest first, and one line for each file that could not be read."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return [], []
    records, problems = [], []
    for name in names:
        try:
            records.append(_read(directory / name))
        except (HpcschedError, OSError) as e:
            problems.append(str(e))
    return sorted(records, key=lambda r: (r.created, r.name)), problems


def _unwritable(path: Path, error: OSError) -> HpcschedError:
    return HpcschedError(f"cannot write the sweep record {path}: {error.strerror or error}")


def _read(path: Path) -> SweepRecord:
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        return SweepRecord.from_dict(json.loads(text))
    except (json.JSONDecodeError, ValueError) as e:
        raise HpcschedError(f"{path}: not a readable sweep record ({e})") from None
