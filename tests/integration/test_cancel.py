"""Cancel leaves nothing behind: not in Slurm, not in Podman, not in the process table (E1)."""

from __future__ import annotations

import json
import subprocess
import time

import psutil
from conftest import UserSession

SLEEPER = """
import os, time
import torch.distributed as dist
dist.init_process_group("gloo")
print(f"ready rank={dist.get_rank()} node={os.environ['SLURMD_NODENAME']}", flush=True)
time.sleep(600)
"""


def slurm_state(slurm_id: int) -> str:
    argv = ["squeue", "-h", "-j", str(slurm_id), "-o", "%T"]
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def leftovers(session: UserSession, slurm_id: int) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(session.root) in cmd or f"hpcsched-{slurm_id}-" in cmd:
            found.append(f"{p.info['pid']} {cmd[:200]}")
    return found


def podman_containers(session: UserSession, slurm_id: int) -> list[str]:
    """The user's containers of this Slurm job (the hpcsched job id alone also matches other
    sessions' job 1, and a container another test run left behind is not this cancel's)."""
    out = session.as_user(["podman", "ps", "-a", "--filter", f"label=org.hpcsched.slurm_job={slurm_id}",
                           "--format", "{{.Names}}"])
    return [line for line in out.stdout.split() if line]


def test_E1_cancel_of_a_running_two_node_job_leaves_nothing(session: UserSession) -> None:
    session.write("sleeper.py", SLEEPER)
    job = session.run_job("sleeper.py", "--nodes", "2")
    deadline = time.monotonic() + 120
    while session.logs(job).count("ready rank=") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session.logs(job).count("ready rank=") == 2, session.logs(job)
    slurm_id = session.status(job)["slurm_job_id"]
    assert leftovers(session, slurm_id), "the job should be running before the cancel"

    cancelled = json.loads(session.hs("cancel", str(job), "--wait", "--json").stdout)
    assert cancelled["state"] == "CANCELLED"

    deadline = time.monotonic() + 60  # Slurm finishes the COMPLETING phase after the state flips
    while time.monotonic() < deadline:
        in_queue = slurm_state(slurm_id)
        if not leftovers(session, slurm_id) and not podman_containers(session, slurm_id) and in_queue in ("", "CANCELLED"):
            break
        time.sleep(0.5)
    assert leftovers(session, slurm_id) == []
    assert podman_containers(session, slurm_id) == []
    assert in_queue in ("", "CANCELLED")
    # issue 14: nothing reads as success, in JSON as in the table
    shown = session.status(job)
    assert (shown["state"], shown["exit_code"], [a["exit_code"] for a in shown["attempts"]]) == ("CANCELLED", None, [None])
    assert session.hs("status", str(job)).stdout.splitlines()[1].rstrip().endswith("cancelled (no exit code)")


def test_cancel_of_a_pending_job_cancels_it_in_slurm(session: UserSession) -> None:
    session.write("sleeper.py", SLEEPER)
    job = session.run_job("sleeper.py", "--nodes", "2", "--sbatch=--begin=now+1hour")
    info = session.wait(job, {"PENDING"})
    session.hs("cancel", str(job), "--wait")
    assert session.status(job)["state"] == "CANCELLED"
    assert slurm_state(info["slurm_job_id"]) in ("", "CANCELLED")
