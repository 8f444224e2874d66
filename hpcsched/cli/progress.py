"""A progress line for commands that wait or loop (``sweep run``, ``cancel --wait``), on stderr.

On a terminal one line is rewritten in place; on a file or a pipe a plain line is written at most
every ``interval`` seconds, so the log of a long wait stays short; with ``--json`` nothing is
written. The clock and the stream are injected.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Clock = Callable[[], float]
# Seconds between plain lines when stderr is not a terminal.
PLAIN_INTERVAL = 5.0


class Progress:
    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool = True,
        clock: Clock | None = None,
        interval: float = PLAIN_INTERVAL,
        tty: bool | None = None,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.clock = time.monotonic if clock is None else clock
        self.interval = interval
        self.tty = self.stream.isatty() if tty is None else tty
        self._last_plain: float | None = None
        self._width = 0  # of the line now on a terminal; 0: none

    def update(self, text: str) -> None:
        """Show TEXT: in place on a terminal, else as a line unless one was written too recently."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            now = self.clock()
            if self._last_plain is not None and now - self._last_plain < self.interval:
                return
            self._last_plain = now
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        """End the line on a terminal, so what is printed next starts on a line of its own."""
        if self.enabled and self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
