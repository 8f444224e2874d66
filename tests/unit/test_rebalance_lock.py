"""One rebalance pass at a time (H2): a second pass reports busy, or waits for the lock if asked."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hpcsched.daemon.rebalance import RebalanceBusy, pass_lock


def hold(state_dir: Path, seconds: float, held: threading.Event) -> None:
    with pass_lock(str(state_dir)):
        held.set()
        time.sleep(seconds)


def test_a_second_pass_reports_busy_at_once_or_runs_after_waiting(tmp_path: Path) -> None:
    held = threading.Event()
    holder = threading.Thread(target=hold, args=(tmp_path, 1.0, held))
    holder.start()
    assert held.wait(10)
    since = time.monotonic()
    busy = pytest.raises(RebalanceBusy, match="another pass is running; this one changed nothing")
    with busy, pass_lock(str(tmp_path)):
        pytest.fail("two passes held the lock at once")
    with pytest.raises(RebalanceBusy, match=r"after waiting 0\.3 s"), pass_lock(str(tmp_path), wait_s=0.3):
        pytest.fail("two passes held the lock at once")
    with pass_lock(str(tmp_path), wait_s=30.0):
        assert time.monotonic() - since >= 0.9, "the waiting pass got the lock only once the first one ended"
    holder.join()
