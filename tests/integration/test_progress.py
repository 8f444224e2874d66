"""Progress lines of long operations on the local cluster, as a user sees them off a terminal:
on stderr only, never on stdout (which scripts read), never with --json."""

from __future__ import annotations

import re

from conftest import UserSession

SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"


def test_cancel_wait_progress_goes_to_stderr_only(session: UserSession) -> None:
    session.write("sleeper.py", SLEEPER)
    job = session.run_job("sleeper.py", "--nodes", "1", "--sbatch=--begin=now+1hour")  # pends: no nodes needed
    session.wait(job, {"PENDING"})
    done = session.hs("cancel", str(job), "--wait")
    assert done.stdout == f"job {job}: CANCELLED\n"
    line = re.compile(rf"job {job}: [A-Z_]+, waiting for Slurm to end it \(\d+ s\)")
    assert all(line.fullmatch(text) for text in done.stderr.splitlines()), done.stderr


def test_sweep_run_progress_goes_to_stderr_only(session: UserSession) -> None:
    session.write("sleeper.py", "print('trial')\n")
    done = session.hs("sweep", "run", "sleeper.py", "--name", "p", "--grid", "x=1,2", "--nodes", "1")
    assert done.stdout.startswith("sweep p: 2 trials submitted")
    assert "sweep p: 1 of 2 trials submitted" in done.stderr.splitlines(), done.stderr
    quiet = session.hs("sweep", "run", "sleeper.py", "--name", "q", "--grid", "x=1,2", "--nodes", "1", "--json")
    assert quiet.stderr == ""
