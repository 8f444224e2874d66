"""The driver's hang watchdog (C2): an attempt whose ranks write no progress line for
``--hang-timeout`` seconds is ended and the job requeued, counted as a failure.

A rank that hangs (stopped, deadlocked, stuck in a collective a dead peer never joins) stops
rank 0's progress lines, because every step of the runtime library is one all-reduce among all
ranks. The hang timeout counts once the runtime library has announced this attempt ("start");
the watch ends at the attempt's "stop" or "done" line. Before its "start" line an attempt is
still starting (container, rendezvous, process group, resume from a checkpoint, data loading):
it is judged only when an earlier attempt of the same job announced the runtime library (a plain
script never writes a "start" line and must never be ended), and then with the longer
:func:`start_allowance`, counted from the attempt's start. It reads only what the progress file
gained since the last look.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENDED = ("stop", "done")
START_ALLOWANCE_MIN_S = 1800.0


def start_allowance(limit_s: float) -> float:
    """How long an attempt may take to announce itself, for a job whose earlier attempt used the
    runtime library: three hang timeouts, and never less than half an hour."""
    return max(3 * limit_s, START_ALLOWANCE_MIN_S)


class ProgressWatch:
    """Whether the ranks of ``attempt`` have gone quiet for more than ``limit_s`` seconds.

    ``now`` values come from the caller's clock (monotonic seconds), so tests move time by hand.
    """

    def __init__(self, progress_file: Path, attempt: int, limit_s: float, now: float) -> None:
        self.path, self.attempt, self.limit_s = progress_file, attempt, limit_s
        self.offset, self.began, self.last_change = 0, now, now
        self.started = self.ended = False
        self.runtime_known = False  # an earlier attempt of the job announced the runtime library
        self._partial = ""

    def stalled(self, now: float) -> bool:
        if self._read_new():
            self.last_change = now
        if self.ended:
            return False
        if self.started:
            return now - self.last_change > self.limit_s
        return self.runtime_known and now - self.began > start_allowance(self.limit_s)

    def verdict(self) -> str:
        """Why the attempt counts as hung, for the log."""
        if self.started:
            return f"no progress from the ranks of attempt {self.attempt} for {self.limit_s:g} s"
        return (f"attempt {self.attempt} has not started training within {start_allowance(self.limit_s):g} s "
                "(an earlier attempt of this job did)")

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
        if not isinstance(record, dict):
            return
        announces = record.get("event") == "start" and bool(record.get("elastic"))
        attempt = record.get("attempt")
        if isinstance(attempt, int) and attempt < self.attempt:
            self.runtime_known = self.runtime_known or announces
        elif attempt == self.attempt:
            self.started = self.started or announces
            self.ended = self.ended or record.get("event") in ENDED
