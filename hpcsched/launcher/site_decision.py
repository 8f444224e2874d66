"""Reading a site coordinator's shrink decision for this allocation (the batch driver's side).

In site mode the coordinator writes ``<decisions dir>/<Slurm job id>.json`` and then signals the
batch step; the ranks checkpoint, and the driver, finding no resize request of the user's own
daemon, looks here. A decision counts only if it is a regular file (not a link) owned by the
directory's owner, in a directory nobody else may write, for this very Slurm job, and newer than
the attempt it stops: a leftover decision never shrinks a later attempt, and a file another user
planted is ignored.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any


def read_decision(directory: str | None, slurm_job_id: str, attempt_started: float) -> int | None:
    """The node count the coordinator decided for this allocation, or None (module docstring)."""
    if not directory:
        return None
    path = os.path.join(directory, f"{slurm_job_id}.json")
    try:
        dir_st = os.stat(directory)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != dir_st.st_uid or stat.S_IMODE(dir_st.st_mode) & 0o022 \
                or stat.S_IMODE(st.st_mode) & 0o022:
            return None
        try:
            data: Any = json.loads(f.read(65536))
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(data, dict) or str(data.get("slurm_job_id")) != str(slurm_job_id) or data.get("mode") != "shrink":
        return None
    nodes, when = data.get("nodes"), data.get("time")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1 or not isinstance(when, (int, float)):
        return None
    return nodes if when >= attempt_started else None
