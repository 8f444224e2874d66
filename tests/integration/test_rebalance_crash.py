"""A7 on the real cluster: the daemon dies in the middle of a rebalance pass, right after it applied
one resize (fault point ``rebalance_after_resize``) and before it recorded it. After a restart every
job is accounted for: the resized job runs at its new size, the job it made room for runs to the
end, and no Slurm job of the store is unknown to it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import UserSession, copy_example
from test_elastic import DIGITS, running_attempt, wait_for


def store_slurm_jobs(store_id: str) -> set[int]:
    """Slurm jobs in the queue that carry this store's tag."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, check=True).stdout
    return {int(i) for i, _, comment in (line.partition(" ") for line in out.splitlines())
            if comment.startswith(f"hpcsched:{store_id}:")}


def test_A7_daemon_killed_after_a_rebalance_resize_leaves_no_job_stranded(session: UserSession) -> None:
    copy_example(session, "digits_cnn.py")
    session.hs("daemon", "start", env={"HPCSCHED_FAULT": "rebalance_after_resize"})
    elastic = session.run_job("digits_cnn.py", "--nodes", "1-3", "--start-nodes", "3", "--", "--epochs", "400", *DIGITS)
    running_attempt(session, elastic, 1, nodes=3, min_steps=10)
    newcomer = session.run_job("digits_cnn.py", "--nodes", "1", "--name", "newcomer", "--", "--epochs", "1", *DIGITS)
    # The newcomer waits; the daemon's admission pass shrinks the elastic job and dies right after.
    wait_for(lambda: session.hs("daemon", "status", check=False).returncode == 1, 180, "the daemon to die in its pass")
    session.hs("daemon", "start")

    assert session.wait(newcomer, timeout=300)["state"] == "COMPLETED", session.logs(newcomer)
    wait_for(lambda: session.status(elastic)["attempts"][-1]["state"] == "RUNNING", 180, "the elastic job running again")
    attempts = session.status(elastic)["attempts"]
    # The allocator picks the size (2, or 1 when its model says the third node gains little).
    assert [(a["reason"], a["nodes"]) for a in attempts][:1] == [("submit", 3)], attempts
    assert len(attempts) == 2 and attempts[1]["reason"] == "resize" and 1 <= attempts[1]["nodes"] <= 2, attempts
    assert attempts[0]["state"] not in ("RUNNING", "PENDING"), "the shrunk attempt was carried out and ended"
    running_attempt(session, elastic, 2, nodes=attempts[1]["nodes"], min_steps=3)

    job_dir = Path(session.status(elastic)["job_dir"])
    store_id = json.loads((job_dir / "job.json").read_text())["store_id"]
    known = {a["slurm_job_id"] for j in (elastic, newcomer) for a in session.status(j)["attempts"]}
    assert store_slurm_jobs(store_id) <= known, "no Slurm job of this store is unknown to it"
    session.hs("cancel", str(elastic), "--wait")
