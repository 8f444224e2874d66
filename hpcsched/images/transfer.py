"""Progress of an image transfer (``hpcsched image push``): bytes written so far, reported while
``podman save`` writes its archive (a thread watches the file grow) and while the archive is
compressed. What to do with a report is the caller's (the CLI shows a line on a terminal)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

# (what is being done, bytes done, bytes in all; 0 when the total is unknown)
Report = Callable[[str, int, int], None]
WATCH_INTERVAL_S = 0.5
CHUNK = 1 << 20
GIB = float(1 << 30)


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


def no_report(_stage: str, _done: int, _total: int) -> None:
    """The report of a transfer nobody watches."""


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@contextlib.contextmanager
def watching(path: str, stage: str, total: int, report: Report, every: float = WATCH_INTERVAL_S) -> Iterator[None]:
    """Report the size of ``path`` every ``every`` seconds while the block runs (another process
    writes it), and once more at the end."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(every):
            report(stage, file_size(path), total)

    thread = threading.Thread(target=watch, name="hpcsched-transfer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    report(stage, file_size(path), total)


def copy_reporting(src: Readable, dst: Writable, stage: str, total: int, report: Report) -> None:
    """``shutil.copyfileobj`` that reports the bytes read after each chunk."""
    done = 0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        done += len(chunk)
        report(stage, done, total)


def progress_text(stage: str, done: int, total: int) -> str:
    """``saving IMAGE: 0.52 of 1.24 GiB (42%)``; without a total, the bytes so far. The archive can
    come out a little larger than the image Podman reports, so the share stops at 99% until done."""
    if total <= 0:
        return f"{stage}: {done / GIB:.2f} GiB"
    share = min(99, int(100 * done / total)) if done < total else 99
    return f"{stage}: {done / GIB:.2f} of {total / GIB:.2f} GiB ({share}%)"
