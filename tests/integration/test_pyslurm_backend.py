"""The optional pyslurm backend against a real Slurm: it must see the queue exactly as the CLI
backend does (the same jobs, states, sizes, nodes, exit codes and restarts).

Marked ``pyslurm``: it needs a pyslurm built for the running Slurm's release in the site venv,
which no package index offers for the releases Debian ships. ``make check`` leaves it out;
``cluster/compat-suite`` builds pyslurm from its source (PYSLURM_SRC) and runs it there.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SITE_VENV, UserSession

pytestmark = pytest.mark.pyslurm

BOTH_VIEWS = """\
import dataclasses, json, sys
from hpcsched.slurm.backend import choose_backend
from hpcsched.slurm.client import SlurmClient
cli = SlurmClient()
chosen, why = choose_backend(cli, "pyslurm")
ids = {int(i) for i in sys.argv[1:]}
view = lambda client: {r.job_id: dataclasses.asdict(r) for r in client.queue() if r.job_id in ids}
print(json.dumps({"why": why, "pyslurm": view(chosen), "cli": view(cli)}))
"""
COMPARED = ("state", "slurm_state", "reason", "node_count", "node_list", "restart_count", "exit_code", "user", "uid",
            "name", "comment", "partition", "priority", "submit_time", "start_time", "end_time")


def sbatch(session: UserSession, *args: str) -> int:
    out = session.as_user(["sbatch", "--parsable", "-p", "debug", "-o", "/dev/null", *args])
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().split(";")[0])


def squeue_state(job: int) -> str:
    return subprocess.run(["squeue", "-h", "-t", "all", "-j", str(job), "-o", "%T"], capture_output=True,
                          text=True, timeout=30).stdout.strip()


def wait_state(job: int, states: set[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while squeue_state(job) not in states:
        assert time.monotonic() < deadline, f"Slurm job {job} never reached {states}: {squeue_state(job)!r}"
        time.sleep(0.5)


def test_pyslurm_sees_the_queue_as_the_cli_does(session: UserSession) -> None:
    jobs = {
        "running": sbatch(session, "-N", "1", "--wrap", "sleep 120"),
        "pending": sbatch(session, "-N", "1", "--begin=now+3600", "--wrap", "true"),
        "completed": sbatch(session, "-N", "1", "--wrap", "true"),
        "failed": sbatch(session, "-N", "1", "--wrap", "exit 3"),
        "requeued": sbatch(session, "-N", "1", "--requeue", "--wrap", "sleep 120"),
        "shrunk": sbatch(session, "-N", "2", "--wrap", "sleep 120"),
    }
    try:
        for name in ("running", "requeued", "shrunk"):
            wait_state(jobs[name], {"RUNNING"})
        for name in ("completed", "failed"):
            wait_state(jobs[name], {"COMPLETED", "FAILED"})
        subprocess.run(["scontrol", "requeue", str(jobs["requeued"])], check=True, timeout=30)
        subprocess.run(["scontrol", "update", f"JobId={jobs['shrunk']}", "NumNodes=1"], check=True, timeout=30)
        script = Path(session.write("views.py", BOTH_VIEWS))
        out = session.as_user([f"{SITE_VENV}/bin/python", str(script), *map(str, jobs.values())])
        assert out.returncode == 0, out.stderr
        views = json.loads(out.stdout)
    finally:
        subprocess.run(["scancel", *map(str, jobs.values())], capture_output=True, timeout=30)
    assert views["why"].startswith("pyslurm "), views["why"]  # the backend was really chosen
    cli = {int(k): v for k, v in views["cli"].items()}
    pys = {int(k): v for k, v in views["pyslurm"].items()}
    assert set(cli) == set(pys) == set(jobs.values()), (sorted(cli), sorted(pys))
    for name, job in jobs.items():
        differ = {f: (cli[job][f], pys[job][f]) for f in COMPARED if cli[job][f] != pys[job][f]}
        assert not differ, f"{name} (Slurm job {job}): CLI vs pyslurm {differ}"
    assert cli[jobs["shrunk"]]["node_count"] == 1 and cli[jobs["requeued"]]["restart_count"] == 1
    assert (cli[jobs["failed"]]["state"], cli[jobs["completed"]]["exit_code"]) == ("FAILED", 0)
