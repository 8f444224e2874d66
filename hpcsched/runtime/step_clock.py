"""Timing optimizer steps on a machine that other work shares.

A step's wall time includes the time its thread was ready to run but waited for a CPU that
another process held: Linux's run-queue delay, which ``/proc/thread-self/schedstat`` reports per
thread. On a node of its own that wait is close to zero. On a shared one (the local cluster's
emulated nodes share two cores; a trial runs beside the other trials of its search) it depends on
what else runs at that moment, not on the batch configuration, and on short steps it dominates:
2-ms CPU steps of one job measured 1.5 to 20 ms at the same configuration, so the step-time
model was fitted to noise. The trainer therefore times a step as its wall time minus the
run-queue wait of the training thread over the same interval, what the step takes on a CPU of
its own. Where the kernel does not report the wait (another OS, schedstats compiled out) it
reads as zero and step times are plain wall time.

Only the training thread's wait is subtracted: a step that waits for other threads or processes
(intra-op threads, data-loader workers, the GPU) keeps that time, as it should. On a GPU each
reading first waits for the kernels the process queued (CUDA runs them asynchronously), so a
step's time is the device's, not the time it took to queue them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

SCHEDSTAT = Path("/proc/thread-self/schedstat")


def parse_run_delay(text: str) -> float:
    """Seconds the thread has waited on a run queue, from a ``schedstat`` line
    ("<ns on CPU> <ns waiting> <time slices>"). Raises ``ValueError`` on anything else."""
    fields = text.split()
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        raise ValueError(f"not a schedstat line: {text!r}")
    return int(fields[1]) / 1e9


@dataclass(frozen=True)
class ClockReading:
    """Monotonic wall time and the thread's total run-queue wait, both in seconds."""

    wall: float
    waited: float


@dataclass(frozen=True)
class StepTime:
    """One timed interval: ``seconds`` on a CPU of its own, ``waited`` for a CPU held by others."""

    seconds: float
    waited: float


def step_time(start: ClockReading, end: ClockReading) -> StepTime:
    """The interval from ``start`` to ``end`` with the run-queue wait taken out (pure).

    The wait is clamped to [0, wall]: the two counters are read one after the other, so a wait
    can straddle a reading by a few microseconds.
    """
    wall = max(0.0, end.wall - start.wall)
    waited = min(wall, max(0.0, end.waited - start.waited))
    return StepTime(wall - waited, waited)


class RunDelayReader:
    """Reads the calling thread's run-queue wait; None where the kernel does not report it.

    The file stays open (a read is then about a microsecond, which matters on 2-ms steps) and is
    reopened when another thread asks, since ``/proc/thread-self`` names the opener.
    """

    def __init__(self, path: Path = SCHEDSTAT) -> None:
        self.path = path
        self._fd: int | None = None
        self._thread: int | None = None
        self._available = True

    def __call__(self) -> float | None:
        if not self._available:
            return None
        try:
            if self._fd is None or self._thread != threading.get_ident():
                self.close()
                self._fd, self._thread = os.open(self.path, os.O_RDONLY), threading.get_ident()
            return parse_run_delay(os.pread(self._fd, 128, 0).decode("ascii", errors="replace"))
        except (OSError, ValueError):
            self._available = False  # once unavailable, always: step times stay comparable
            self.close()
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def wait_for_gpu() -> None:
    """Wait until this process's queued GPU work has run; nothing to wait for where CUDA is unused."""
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        torch.cuda.synchronize()


class StepClock:
    """Times the interval since :meth:`start`, with the training thread's CPU wait taken out."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        run_delay: Callable[[], float | None] | None = None,
        synchronize: Callable[[], None] = wait_for_gpu,
    ) -> None:
        self._clock = clock
        self._run_delay = run_delay or RunDelayReader()
        self._synchronize = synchronize
        self._start = self.reading()

    def reading(self) -> ClockReading:
        self._synchronize()
        return ClockReading(self._clock(), self._run_delay() or 0.0)

    def start(self) -> None:
        self._start = self.reading()

    def lap(self) -> StepTime:
        """The time since the last :meth:`start` (or construction)."""
        return step_time(self._start, self.reading())

    def close(self) -> None:
        if isinstance(self._run_delay, RunDelayReader):
            self._run_delay.close()
