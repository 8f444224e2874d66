"""Progress lines for the daemon: ``$HPCSCHED_JOB_DIR/progress.jsonl``, written by rank 0 only.

Each line is one JSON object, appended with a single write() on an O_APPEND descriptor so that a
reader never sees half a line from a crashed writer mixed into another. "step" lines are rate
limited (at most one per ``min_interval_s``, at most one per step); "start", "checkpoint", "stop",
"done", "adapt" (an adaptive job changed its batch configuration) and "metrics" (values the script
logged, e.g. validation accuracy) lines are always written and do not delay the next step line.
``step_time`` (on "step" lines only) is the mean duration of the ``timed_steps`` steps since the
previous step line that the trainer timed (it leaves out warm-up steps and steps at another
configuration), so a line's step time belongs to the configuration on that line. It leaves out
the time the training thread waited for a CPU that other processes held, which ``cpu_wait``
gives per step (step_clock.py); ``fields``
(nodes, local batch, noise, ...) are added to every line. The "start" line, with
``"elastic": true``, is what tells hpcsched that the job uses this library and may be resized.
Progress is advisory: a failing write is reported once and never stops training.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVENTS = ("start", "step", "checkpoint", "stop", "done", "adapt", "metrics")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class ProgressLog:
    """Appends progress lines; with ``path=None`` (outside hpcsched) it records nothing."""

    def __init__(
        self,
        path: Path | None,
        *,
        attempt: int,
        world_size: int,
        min_interval_s: float = 0.5,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.attempt, self.world_size = attempt, world_size
        self.global_batch: int | None = None
        self.total_steps: int | None = None
        # the job's samples over all its epochs: unlike total_steps it does not change with the
        # world size, so progress shown from it never goes back after a resize
        self.total_samples: int | None = None
        self.fields: dict[str, Any] = {}
        self.min_interval_s = min_interval_s
        self._wall_clock, self._clock = wall_clock, clock
        self._fd: int | None = None
        self._last_time = clock()
        self._loss_sum, self._loss_count = 0.0, 0
        self._timed_sum, self._timed_count, self._waited_sum = 0.0, 0, 0.0

    def step(
        self, *, step: int, epoch: int, samples: int, loss: float | None, step_time: float | None = None,
        cpu_wait: float = 0.0,
    ) -> dict[str, Any] | None:
        """Note one finished step (``step_time``: its duration, None if it is not to be timed;
        ``cpu_wait``: what was left out of it); write a line if ``min_interval_s`` has passed since
        the last one."""
        if loss is not None and math.isfinite(loss):
            self._loss_sum += loss
            self._loss_count += 1
        if step_time is not None and math.isfinite(step_time) and step_time > 0.0:
            self._timed_sum += step_time
            self._timed_count += 1
            self._waited_sum += cpu_wait if math.isfinite(cpu_wait) else 0.0
        if self._clock() - self._last_time < self.min_interval_s:
            return None
        return self.event("step", step=step, epoch=epoch, samples=samples)

    def event(self, event: str, *, step: int, epoch: int, samples: int, **extra: Any) -> dict[str, Any] | None:
        """Write one line now; ``loss`` is the mean of the losses reported since the previous line.

        ``extra`` adds keys to this line only (``metrics``, an adapt ``reason``)."""
        if event not in EVENTS:
            raise ValueError(f"unknown progress event {event!r}")
        timed = self._timed_count if event == "step" else 0  # only step lines carry (and reset) step times
        record = {
            "time": self._wall_clock(),
            "attempt": self.attempt,
            "event": event,
            "step": step,
            "epoch": epoch,
            "samples": samples,
            "loss": _finite(self._loss_sum / self._loss_count) if self._loss_count else None,
            "step_time": self._timed_sum / timed if timed else None,
            "timed_steps": timed,
            "cpu_wait": self._waited_sum / timed if timed else None,
            "world_size": self.world_size,
            "global_batch": self.global_batch,
            "total_steps": self.total_steps,
            "total_samples": self.total_samples,
            "elastic": True,
            **self.fields,
            **extra,
        }
        self._write(json.dumps(record, allow_nan=False) + "\n")
        self._loss_sum, self._loss_count = 0.0, 0
        if event in ("start", "step"):
            self._timed_sum, self._timed_count, self._waited_sum = 0.0, 0, 0.0
            self._last_time = self._clock()
        return record

    def _write(self, line: str) -> None:
        if self.path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, line.encode())
        except OSError as error:
            print(f"hpcsched: progress not recorded any more ({self.path}): {error}", file=sys.stderr)
            self.path = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
