"""The job directory on the shared file system, which the daemon, the batch driver, the launcher
and the runtime library inside the container all see at the same path:

    <job_dir>/job.json                      whose directory this is: store id, job id, submission nonce
    <job_dir>/batch.sh                      the generated batch script
    <job_dir>/attempt-<n>.log               output of attempt n (all nodes, all ranks)
    <job_dir>/attempts/<n>/info.json        written by the driver when attempt n starts
    <job_dir>/attempts/<n>/end.json         written by the driver when attempt n ends
    <job_dir>/attempts/<n>/checkpointed     written by the runtime when it stopped at a checkpoint
    <job_dir>/attempts/<n>/launcher-<node>.problem  why the launcher could not start the container there
    <job_dir>/progress.jsonl                progress lines from the runtime (rank 0)
    <job_dir>/resize-request.json           a resize the daemon asked for, consumed by the driver
    <job_dir>/stop-request                  asks the runtime to stop at a checkpoint (fallback to SIGUSR1)
    <job_dir>/superseded-by                 a grown successor allocation took over (its Slurm id)
    <job_dir>/checkpoints/                  checkpoints (unless HPCSCHED_CHECKPOINT_DIR says otherwise)

Attempt numbers are allocated by creating ``attempts/<n>`` (mkdir is atomic), so two drivers can
never start the same attempt.

A new job's directory is ``<jobs dir>/<store id>-<job id>`` (jobs recorded by earlier versions keep
``<jobs dir>/<job id>``, which their store rows name). The daemon creates it itself, before the first
submission; a directory found there already is refused, never adopted (D4).
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

EXIT_CHECKPOINTED = 75
# Slurm warns the batch shell this many seconds before the time limit, so the job can checkpoint
# and be requeued (reliability B8: the signal may arrive up to 60 s early).
SIGNAL_LEAD_SECONDS = 120


class JobDirectoryRefused(OSError):
    """The job's directory cannot be this job's alone; ``strerror`` says why and what to do."""

    def __init__(self, code: int, message: str, path: str) -> None:
        super().__init__(code, message, path)


def job_dir_path(jobs_root: str, store_id: str, job_id: int | str) -> str:
    """A new job's directory. The store's id is part of the name: two stores sharing one jobs
    directory (two login nodes, a moved state directory) both have a job 1, never one directory."""
    return f"{jobs_root}/{store_id}-{job_id}"


def identity_file(job_dir: str) -> Path:
    return Path(job_dir) / "job.json"


def create_job_dir(job_dir: str, identity: dict[str, str]) -> None:
    """Create the job's directory (mode 0700) and record whose it is.

    A directory already there is used only when it is this job's (its ``job.json`` matches: a
    submission cut short by a crash) or an empty real directory of ours (the crash came right after
    mkdir); anything else existed before submission and is refused. No component of the path may
    be a symbolic link another user owns (G5)."""
    os.makedirs(os.path.dirname(job_dir), mode=0o700, exist_ok=True)
    refuse_foreign_links(os.path.dirname(job_dir))
    try:
        os.mkdir(job_dir, 0o700)
    except FileExistsError:
        if not _own_job_dir(job_dir, identity):
            raise JobDirectoryRefused(errno.EEXIST, (
                f"the job directory {job_dir} exists before submission (left by another run, or by another "
                "hpcsched store sharing this jobs directory?); hpcsched never adopts a directory it did not "
                "create: remove or rename it, or set HPCSCHED_JOBS_DIR to a directory of your own"), job_dir) from None
    write_json(identity_file(job_dir), identity)


def _own_job_dir(job_dir: str, identity: dict[str, str]) -> bool:
    st = os.lstat(job_dir)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return False
    return read_json(identity_file(job_dir)) == identity or not os.listdir(job_dir)


def refuse_foreign_links(path: str) -> None:
    """Raise if a component of ``path`` is a symbolic link owned by someone other than the user
    or root: whoever owns a link decides where everything below it is written."""
    parts = Path(os.path.abspath(path)).parts
    for end in range(2, len(parts) + 1):
        prefix = os.path.join(*parts[:end])
        st = os.lstat(prefix)
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.getuid()):
            raise JobDirectoryRefused(errno.ELOOP, (
                f"{prefix} is a symbolic link (to {os.readlink(prefix)}) owned by {_user_name(st.st_uid)}; "
                "hpcsched never writes through another user's link: set HPCSCHED_JOBS_DIR to a directory of "
                "your own"), prefix)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def attempts_dir(job_dir: str) -> Path:
    return Path(job_dir) / "attempts"


def attempt_dir(job_dir: str, n: int) -> Path:
    return attempts_dir(job_dir) / str(n)


def log_path(job_dir: str, n: int) -> Path:
    return Path(job_dir) / f"attempt-{n}.log"


def checkpointed_marker(job_dir: str, n: int) -> Path:
    return attempt_dir(job_dir, n) / "checkpointed"


MAX_PROBLEM_BYTES = 2000


def launcher_problem(job_dir: str, n: int, node: str) -> Path:
    """Why the launcher on ``node`` could not start attempt ``n``'s container (one line of text):
    what ``hpcsched status`` shows, beside the attempt's log."""
    return attempt_dir(job_dir, n) / f"launcher-{node}.problem"


def launcher_problems(job_dir: str, n: int) -> dict[str, str]:
    """The launchers' problems of attempt ``n`` by node; none when the directory cannot be read."""
    try:
        paths = sorted(attempt_dir(job_dir, n).glob("launcher-*.problem"))
    except OSError:
        return {}
    found = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_PROBLEM_BYTES).strip()
        except OSError:
            continue
        if text:
            found[path.name[len("launcher-"):-len(".problem")]] = text
    return found


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


def ran_in(job_dir: str, slurm_job_id: int) -> bool:
    """Whether a driver started an attempt of the job in Slurm job ``slurm_job_id`` (its
    ``info.json`` names that allocation)."""
    if not job_dir:
        return False
    for n in existing_attempts(job_dir):
        info = read_json(attempt_dir(job_dir, n) / "info.json")
        if info is not None and info.get("slurm_job_id") == slurm_job_id:
            return True
    return False


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
