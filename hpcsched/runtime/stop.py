"""Stop requests: noticing them, agreeing on them, and never hanging while acting on them.

hpcsched asks a job to checkpoint and exit (to resize it, or ahead of its time limit) by sending
SIGUSR1 to every worker, or, as a fallback, by creating ``$HPCSCHED_JOB_DIR/stop-request``.
torchrun sends SIGTERM to its workers when it is itself terminated and kills them 30 s later;
that is a stop request too. The signal handler only records the signal. Ranks then combine their
local requests with one all-reduce (MAX) so that they all stop after the same step — a request
seen by one rank a step earlier than by another must not leave the other waiting in DDP's next
all-reduce.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class StopReason(enum.IntEnum):
    """Why a rank wants to stop; ordered by urgency, so the agreed reason is the most urgent one."""

    NONE = 0
    STOP_FILE = 1
    SIGUSR1 = 2
    SIGTERM = 3


def agree(flags: Iterable[int]) -> StopReason:
    """What all ranks do: the MAX of the per-rank reasons (what the all-reduce computes)."""
    return StopReason(max(flags, default=StopReason.NONE))


def _reason_for(signum: int) -> StopReason:
    return StopReason.SIGTERM if signum == signal.SIGTERM else StopReason.SIGUSR1


class StopRequest:
    """This process's own view: a recorded signal, or the stop file (checked at most every ``file_interval_s``)."""

    def __init__(
        self,
        stop_file: Path | None = None,
        *,
        file_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stop_file = stop_file
        self.file_interval_s = file_interval_s
        self._clock = clock
        self._signal = 0
        self._file_seen = False
        self._next_file_check = float("-inf")
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Only records the request: no I/O, no locks, no collectives in a signal handler.
        self._signal = signum

    def install(self, signals: Iterable[int] = STOP_SIGNALS) -> bool:
        """Install the handlers; only possible in the main thread (returns False elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            print("hpcsched: not in the main thread; stop signals are not handled here", file=sys.stderr)
            return False
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self) -> None:
        """Restore the handlers that were there before :meth:`install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def ignore_further(self) -> None:
        """Ignore the stop signals from now on: the process is already leaving.

        Python restores the default action of handled signals while the interpreter shuts down,
        so torchrun's SIGTERM (sent to the other ranks as soon as the first one exits) would turn
        a clean exit 75 into death by signal; an ignored signal stays ignored.
        """
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    def local_reason(self) -> StopReason:
        """The reason this process alone would stop now (NONE if it would not)."""
        if self._signal:
            return _reason_for(self._signal)
        if self.stop_file is not None and not self._file_seen and self._clock() >= self._next_file_check:
            self._next_file_check = self._clock() + self.file_interval_s
            self._file_seen = self.stop_file.exists()
        return StopReason.STOP_FILE if self._file_seen else StopReason.NONE

    def consume_stop_file(self) -> None:
        """Remove the stop file once a stop has been honoured, so that the next attempt does not stop at once."""
        if self.stop_file is not None:
            try:
                self.stop_file.unlink(missing_ok=True)
            except OSError as error:
                print(f"hpcsched: could not remove {self.stop_file}: {error}", file=sys.stderr)


class ShutdownWatchdog:
    """Ends the process if an agreed stop has not finished within ``timeout_s``.

    A peer that died or a file system that hangs must not keep a stopping job alive until
    torchrun's SIGKILL; the previous periodic checkpoint stays valid, so leaving is safe.
    ``exit_code`` is asked at the moment of firing (the stop may have checkpointed by then).
    """

    def __init__(
        self,
        timeout_s: float,
        exit_code: Callable[[], int],
        *,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.timeout_s = timeout_s
        self._exit_code = exit_code
        self._exit = exit
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        self._timer = threading.Timer(self.timeout_s, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        code = self._exit_code()
        message = f"hpcsched: stop did not finish within {self.timeout_s:g} s; exiting with code {code}\n"
        try:
            os.write(2, message.encode())  # not print(): the main thread may hold stderr's lock
        except OSError:
            pass
        self._exit(code)


def write_checkpointed_marker(marker: Path, *, step: int, checkpoint: Path) -> bool:
    """Tell the driver that this attempt stopped with a checkpoint: write-new, fsync, rename.

    Returns False (after saying why on stderr) when the marker could not be written.
    """
    record = {"step": step, "time": time.time(), "checkpoint": str(checkpoint)}
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, marker)
    except OSError as error:
        print(f"hpcsched: could not write {marker}: {error}", file=sys.stderr)
        return False
    return True
