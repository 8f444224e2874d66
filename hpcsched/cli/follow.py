"""Printing a job's log as it grows, until the job ends (``logs -f``, ``run -f``)."""

from __future__ import annotations

import os
import sys
import time

from hpcsched.config import Settings
from hpcsched.daemon import client

POLL = 0.5


def print_log(path: str) -> bool:
    """Copy the log to stdout; False when there is none (yet)."""
    try:
        with open(path, "rb") as f:
            sys.stdout.buffer.write(f.read())
    except FileNotFoundError:
        return False
    finally:
        sys.stdout.flush()
    return True


def no_log_note(info: dict[str, object]) -> str:
    """What ``logs`` says on stderr when the attempt has no log file (from the daemon's
    ``log_path`` answer): not yet, or, for a job that ended, that its output never arrived."""
    where = f"job {info['job']} attempt {info['attempt']}"
    if info.get("final"):
        return (f"hpcsched: {where} left no output at {info['path']} (the job is {info['state']}): Slurm could not "
                "write there from the job's nodes; is the jobs directory on a file system every node mounts? "
                "(`hpcsched doctor` checks it)")
    return f"hpcsched: {where} has no output yet (the job is {info['state']}); it will be in {info['path']}"


def follow_log(cfg: Settings, job_id: int, attempt: int | None) -> str:
    """Stream the attempt's log (the newest when ``attempt`` is None, switching to a new attempt
    when one starts) until the job is final; return the final state."""
    offset = 0
    path = ""
    while True:
        info = client.call(cfg, "log_path", {"job": job_id, "attempt": attempt})
        if info["path"] != path:
            path, offset = info["path"], 0
        offset = _copy_new(path, offset)
        if info["final"]:
            time.sleep(POLL)
            _copy_new(path, offset)
            return str(info["state"])
        time.sleep(POLL)


def _copy_new(path: str, offset: int) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return offset + len(data) if os.path.exists(path) else offset
