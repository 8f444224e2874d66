"""The driver's hang watchdog (C2): an attempt whose ranks write no progress line for
``--hang-timeout`` seconds is ended and the job requeued, counted as a failure.

A rank that hangs (stopped, deadlocked, stuck in a collective a dead peer never joins) stops
rank 0's progress lines, because every step of the runtime library is one all-reduce among all
ranks. The watch starts only when the runtime library has announced this attempt ("start"), so a
plain script and an attempt still starting (container, rendezvous, data loading) are never
judged; it ends at the attempt's "stop" or "done" line. It reads only what the progress file
gained since the last look.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENDED = ("stop", "done")


class ProgressWatch:
    """Whether the ranks of ``attempt`` have gone quiet for more than ``limit_s`` seconds.

    ``now`` values come from the caller's clock (monotonic seconds), so tests move time by hand.
    """

    def __init__(self, progress_file: Path, attempt: int, limit_s: float, now: float) -> None:
        self.path, self.attempt, self.limit_s = progress_file, attempt, limit_s
        self.offset, self.last_change = 0, now
        self.started = self.ended = False
        self._partial = ""

    def stalled(self, now: float) -> bool:
        if self._read_new():
            self.last_change = now
        return self.started and not self.ended and now - self.last_change > self.limit_s

    def _read_new(self) -> bool:
        """Take in the lines added since the last call; True when there were any."""
        try:
            if os.stat(self.path).st_size <= self.offset:
                return False
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                added = f.read()
        except FileNotFoundError:
            return False
        self.offset += len(added)
        *lines, self._partial = (self._partial + added.decode("utf-8", "replace")).split("\n")
        for line in lines:
            self._note(line)
        return True

    def _note(self, line: str) -> None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(record, dict) or record.get("attempt") != self.attempt:
            return
        self.started = self.started or (record.get("event") == "start" and bool(record.get("elastic")))
        self.ended = self.ended or record.get("event") in ENDED
