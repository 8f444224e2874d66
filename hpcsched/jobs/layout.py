"""The job directory on the shared file system, which the daemon, the batch driver, the launcher
and the runtime library inside the container all see at the same path:

    <job_dir>/batch.sh                      the generated batch script
    <job_dir>/attempt-<n>.log               output of attempt n (all nodes, all ranks)
    <job_dir>/attempts/<n>/info.json        written by the driver when attempt n starts
    <job_dir>/attempts/<n>/end.json         written by the driver when attempt n ends
    <job_dir>/attempts/<n>/checkpointed     written by the runtime when it stopped at a checkpoint
    <job_dir>/progress.jsonl                progress lines from the runtime (rank 0)
    <job_dir>/resize-request.json           a resize the daemon asked for, consumed by the driver
    <job_dir>/stop-request                  asks the runtime to stop at a checkpoint (fallback to SIGUSR1)
    <job_dir>/superseded-by                 a grown successor allocation took over (its Slurm id)
    <job_dir>/checkpoints/                  checkpoints (unless HPCSCHED_CHECKPOINT_DIR says otherwise)

Attempt numbers are allocated by creating ``attempts/<n>`` (mkdir is atomic), so two drivers can
never start the same attempt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EXIT_CHECKPOINTED = 75


def attempts_dir(job_dir: str) -> Path:
    return Path(job_dir) / "attempts"


def attempt_dir(job_dir: str, n: int) -> Path:
    return attempts_dir(job_dir) / str(n)


def log_path(job_dir: str, n: int) -> Path:
    return Path(job_dir) / f"attempt-{n}.log"


def checkpointed_marker(job_dir: str, n: int) -> Path:
    return attempt_dir(job_dir, n) / "checkpointed"


def resize_request(job_dir: str) -> Path:
    return Path(job_dir) / "resize-request.json"


def stop_request(job_dir: str) -> Path:
    return Path(job_dir) / "stop-request"


def superseded(job_dir: str) -> Path:
    return Path(job_dir) / "superseded-by"


def progress_file(job_dir: str) -> Path:
    return Path(job_dir) / "progress.jsonl"


def existing_attempts(job_dir: str) -> list[int]:
    try:
        names = os.listdir(attempts_dir(job_dir))
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def allocate_attempt(job_dir: str, at_least: int = 1) -> int:
    """Claim the next free attempt number (at least ``at_least``) by creating its directory."""
    attempts_dir(job_dir).mkdir(parents=True, exist_ok=True)
    n = max([at_least - 1, *existing_attempts(job_dir)]) + 1
    while True:
        try:
            attempt_dir(job_dir, n).mkdir()
            return n
        except FileExistsError:
            n += 1


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write-new, fsync, rename: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None when it is missing or not (yet) valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
