"""Fixtures shared by the unit tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """Put back the SIGUSR1/SIGTERM handlers an ElasticTrainer installed (and the test left)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """An empty job directory (HPCSCHED_JOB_DIR) for a trainer."""
    path = tmp_path / "job"
    path.mkdir()
    return path
