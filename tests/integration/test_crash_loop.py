"""The crash loop's short variant (reliability A1-A4): the daemon SIGKILLed five times at random
points while jobs are submitted, cancelled and resized; after every restart the store is intact,
every acknowledged job is listed, and no Slurm job is duplicated or orphaned.

The full run (50 kills) is ``benchmarks/crash_loop.py``; its results are committed under
benchmarks/results/.
"""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import crash_loop


def test_A4_five_daemon_kills_lose_nothing_and_submit_nothing_twice(cluster: None) -> None:
    result = crash_loop.crash_loop(kills=5, seed=5, name="crash_loop_ci")
    assert result["problems"] == [], crash_loop.table(result)
    final = result["final"]
    assert result["kills"] == 5 and final["jobs"] >= result["acknowledged_jobs"] >= 1, crash_loop.table(result)
    assert final["orphans"] == [] and final["duplicates"] == {}
    assert all(state in crash_loop.FINAL for state in final["states"])
