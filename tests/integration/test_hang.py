"""C2 on the real cluster: one rank of a 2-node elastic job hangs (SIGSTOP). The driver's hang
watchdog (``--hang-timeout``) ends the attempt, the job is requeued as a failure and the next
attempt resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UserSession, copy_example
from test_elastic import CHECKPOINT_EVERY, DIGITS, progress, running_attempt, wait_for

HANG_TIMEOUT = 20
BOUND = HANG_TIMEOUT + 60  # generous: the watchdog's limit, then SIGTERM through srun and podman


def worker_pids(job_dir: str, attempt: int) -> dict[int, int]:
    """{rank: pid} of the job's training processes (not torchrun, not hpcsched's process 1); the
    emulated nodes share this machine's process table."""
    found = subprocess.run(["pgrep", "-f", "digits_cnn"], capture_output=True, text=True).stdout.split()
    ranks = {}
    for pid in map(int, found):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
        except OSError:
            continue
        if any(b"torchrun" in a or b"hpcsched.runtime.forward" in a for a in argv):
            continue
        if env.get("HPCSCHED_JOB_DIR") == job_dir and env.get("HPCSCHED_ATTEMPT") == str(attempt) and "RANK" in env:
            ranks[int(env["RANK"])] = pid
    return ranks


@pytest.fixture
def stopped() -> Iterator[list[int]]:
    """Processes the test stopped; continued and killed afterwards, whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def test_C2_hung_rank_ends_the_attempt_within_the_bound_and_the_job_resumes(
        session: UserSession, stopped: list[int]) -> None:
    copy_example(session, "digits_cnn.py")
    job = session.run_job("digits_cnn.py", "--nodes", "1-2", "--start-nodes", "2", "--hang-timeout", str(HANG_TIMEOUT),
                          "--", "--epochs", "200", *DIGITS)
    running_attempt(session, job, 1, nodes=2, min_steps=3)
    job_dir = session.status(job)["job_dir"]
    wait_for(lambda: any(r["event"] == "checkpoint" for r in progress(session, job)), 120, "a first checkpoint")
    wait_for(lambda: len(worker_pids(job_dir, 1)) == 2, 60, "both training processes")
    victim = worker_pids(job_dir, 1)[1]
    os.kill(victim, signal.SIGSTOP)
    stopped.append(victim)
    saved = max(r["step"] for r in progress(session, job) if r["event"] == "checkpoint")

    end = Path(job_dir) / "attempts" / "1" / "end.json"
    wait_for(end.exists, BOUND, f"attempt 1 to end within {BOUND} s of the hang")
    assert json.loads(end.read_text())["outcome"] == "hung"
    assert "ending it as hung" in session.logs(job, attempt=1)

    running_attempt(session, job, 2, nodes=2, min_steps=1)
    info = session.status(job)
    assert [(a["number"], a["reason"]) for a in info["attempts"][:2]] == [(1, "submit"), (2, "node_failure")]
    assert info["counts"]["failures"] == 1
    start = next(r for r in progress(session, job) if r.get("attempt") == 2 and r["event"] == "start")
    assert start["step"] >= saved >= CHECKPOINT_EVERY  # resumed from the checkpoint, not from step 0
    session.hs("cancel", str(job))
