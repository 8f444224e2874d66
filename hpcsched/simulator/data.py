"""Where the Pollux data lives: ``$HPCSCHED_POLLUX_DATA``, else ``/work/shared/data/pollux``."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .applications import Application, load_applications

DEFAULT_DATA = Path("/work/shared/data/pollux")


def data_dir() -> Path:
    return Path(os.environ.get("HPCSCHED_POLLUX_DATA", str(DEFAULT_DATA)))


@functools.lru_cache(maxsize=4)
def _load(traces: Path) -> dict[str, Application]:
    return load_applications(traces)


def default_applications(root: Path | None = None) -> dict[str, Application]:
    """The six applications, fitted once per process (about 0.3 s)."""
    traces = (root or data_dir()) / "traces"
    if not traces.is_dir():
        raise FileNotFoundError(f"no Pollux profiles at {traces} (set HPCSCHED_POLLUX_DATA)")
    return _load(traces)
