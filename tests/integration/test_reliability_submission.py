"""Submission faults on the real cluster: an sbatch that fails after Slurm queued the job (A3), and
a batch script that cannot be written, which must not stop the daemon's monitor (reliability
issue, item 4)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from conftest import UserSession, _chown_tree
from test_crash_recovery import slurm_jobs_with_tag

SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(600)\n"
QUICK = "print('done', flush=True)\n"


def wrappers(session: UserSession, **scripts: str) -> dict[str, str]:
    """The user's environment with wrappers of Slurm commands first on PATH (``{real}`` in a
    script is the real command). hpcsched runs Slurm's commands from the directory that holds
    ``sbatch``, so an ``sbatch`` is always put there: a plain one unless given."""
    bin_dir = session.root / "bin"
    bin_dir.mkdir()
    for name, body in {"sbatch": 'exec {real} "$@"', **scripts}.items():
        real = shutil.which(name)
        assert real, f"{name} is not on PATH"
        (bin_dir / name).write_text("#!/bin/sh\n" + body.format(real=real) + "\n")
        (bin_dir / name).chmod(0o755)
    _chown_tree(bin_dir, session.user)
    return {"PATH": f"{bin_dir}:{session.env['PATH']}"}


def slurm_state(slurm_id: int) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", str(slurm_id), "-o", "State"],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().split(" ")[0]


def test_A3_sbatch_error_after_queueing_is_adopted_and_cancel_reaches_it(session: UserSession) -> None:
    session.write("sleeper.py", SLEEPER)
    env = wrappers(session, sbatch='{real} "$@"\necho "sbatch wrapper: post-submit step failed" >&2\nexit 1')
    answer = json.loads(session.hs("run", "--json", "sleeper.py", "--nodes", "1", env=env).stdout)
    job, slurm_id = answer["id"], answer["slurm_job_id"]
    assert answer["state"] != "FAILED" and slurm_id is not None, answer
    log = (session.daemon_file("log")).read_text()
    assert f"sbatch for job {job} failed" in log and f"adopting Slurm job {slurm_id}" in log, "the wrapper failed"
    session.wait(job, {"RUNNING"})
    store_id = json.loads(session.hs("daemon", "status", "--json", env=env).stdout)["store_id"]
    assert slurm_jobs_with_tag(f"hpcsched:{store_id}:{job}") == [slurm_id], "exactly one Slurm job, the adopted one"

    cancelled = json.loads(session.hs("cancel", str(job), "--wait", "--json", env=env).stdout)
    assert cancelled["state"] == "CANCELLED"
    deadline = time.monotonic() + 60
    while slurm_state(slurm_id) != "CANCELLED" and time.monotonic() < deadline:
        time.sleep(1)
    assert slurm_state(slurm_id) == "CANCELLED", "the Slurm job itself is cancelled"


def test_unwritable_batch_script_fails_that_job_and_the_monitor_goes_on(session: UserSession) -> None:
    session.write("quick.py", QUICK)
    crashed = session.hs("run", "quick.py", check=False, env={"HPCSCHED_FAULT": "before_sbatch"})
    assert crashed.returncode != 0, "the daemon was meant to die with job 1 committed and not submitted"
    (script,) = (session.root / "jobs").rglob("batch.sh")
    os.chmod(script.parent, 0o555)  # the restarted daemon cannot rewrite the batch script there

    session.hs("daemon", "start")
    second = session.run_job("quick.py")
    assert session.wait(second)["state"] == "COMPLETED", session.logs(second)
    first = session.wait(1)
    assert first["state"] == "FAILED"
    assert f"cannot write the batch script {script}" in first["reason"] and "Permission denied" in first["reason"]

    health = json.loads(session.hs("daemon", "status", "--json").stdout)["monitor"]
    assert health["healthy"], health
    assert health["last_error"].startswith("job 1: cannot write the batch script"), health
    assert "monitor: healthy" in session.hs("daemon", "status").stdout


def test_daemon_status_reports_a_monitor_whose_slurm_calls_fail(session: UserSession) -> None:
    """B4 for real: squeue answers with an error for a while; the daemon says so and recovers."""
    session.write("sleeper.py", SLEEPER)
    env = wrappers(session, squeue='echo "squeue: error: Unable to contact slurm controller" >&2\nexit 1')
    job = int(json.loads(session.hs("run", "--json", "sleeper.py", env=env).stdout)["id"])
    health = wait_for_health(session, lambda h: h["consecutive_failures"] >= 3)
    assert not health["healthy"] and "squeue" in health["last_error"], health
    assert session.status(job)["state"] == "PENDING", "states are kept while Slurm does not answer"
    assert "monitor: UNHEALTHY" in session.hs("daemon", "status").stdout
    (session.root / "bin" / "squeue").unlink()
    wait_for_health(session, lambda h: h["healthy"])
    session.wait(job, {"RUNNING"})


def wait_for_health(session: UserSession, wanted: Callable[[dict[str, Any]], bool],
                    timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health: dict[str, Any] = json.loads(session.hs("daemon", "status", "--json").stdout)["monitor"]
        if wanted(health) or time.monotonic() > deadline:
            assert wanted(health), health
            return health
        time.sleep(1)
