"""The coordinator's audit log: one JSON line for every action taken on somebody's job, with its
reason, before the action (intent) and after it (outcome).

``audit.jsonl`` in the coordinator's private state directory, appended with ``O_APPEND`` and
never through a link (:func:`hpcsched.daemon.statedir.open_private_file`). Operators read it
through the coordinator's socket (``hpcsched site audit``), users never.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

from hpcsched.daemon import statedir

MAX_READ_LINES = 100_000


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            fd = statedir.open_private_file(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` entries at or after ``since`` (oldest first)."""
        entries = [e for e in self._lines() if float(e.get("time") or 0) >= since]
        return entries[-limit:]

    def _lines(self) -> Iterator[dict[str, Any]]:
        try:
            fd = statedir.open_private_file(self.path, os.O_RDONLY)
        except statedir.UnsafePath:
            raise
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f):
                if n >= MAX_READ_LINES:
                    break
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash mid-write
                if isinstance(entry, dict):
                    yield entry
