"""Operators' views on the real cluster (issue: site mode, item 5): ``report --all-users`` for the
site's operator (the service account, AdminLevel Operator in Slurm) covers every user's jobs,
hpcsched's and plain ones; an ordinary user asking is refused, and so is their reading of the
coordinator's audit log, which the operator reads."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from conftest import CLI, UserSession
from test_elastic import wait_for
from test_site import OTHER, SOCKET, alice, coordinator, plain_sbatch, slurm_job  # noqa: F401  (fixtures)

OPERATOR = "hpcsite"


def as_operator(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
           "HPCSCHED_COORDINATOR_SOCKET": SOCKET}
    return subprocess.run([CLI, *args], user=OPERATOR, group=OPERATOR, cwd="/", env=env, capture_output=True,
                          text=True, timeout=120)


def find(jobs: list[dict[str, Any]], slurm_id: int) -> dict[str, Any]:
    """The reported job one of whose runs is Slurm job ``slurm_id`` (hpcsched's job ids repeat
    across users and stores; Slurm's do not)."""
    found = [j for j in jobs if slurm_id in {a["slurm_job_id"] for a in j["attempts"]}]
    assert len(found) == 1, [(j["user"], j["id"], j["name"]) for j in jobs]
    return found[0]


def test_an_operator_reports_every_users_jobs_and_an_ordinary_user_is_refused(alice: UserSession) -> None:  # noqa: F811
    alice.write("ok.py", "import time\nprint('ok', flush=True)\ntime.sleep(2)\n")
    job = alice.run_job("ok.py", "--nodes", "1", "--name", "alices-job")
    plain = plain_sbatch(OTHER, nodes=1, seconds=2)
    assert alice.wait(job, timeout=300)["state"] == "COMPLETED"
    wait_for(lambda: slurm_job(plain)[0] == "", 120, "the plain job to end")

    out = as_operator("report", "--all-users", "--since", "1h", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["accounting"]["available"], data["accounting"]
    mine = find(data["jobs"], int(alice.status(job)["attempts"][0]["slurm_job_id"]))
    theirs = find(data["jobs"], plain)
    assert (mine["user"], mine["id"], mine["state"]) == ("hpcuser", job, "COMPLETED") and "hpcsched" in mine["name"]
    # Slurm 22.05's JSON names no user for a job without an association (hpcuser2 has none): its group then
    assert theirs["user"] in (OTHER, f"group:{OTHER}") and theirs["state"] == "COMPLETED" and theirs["nodes"] == 1
    assert mine["node_hours"] > 0 and theirs["node_hours"] > 0, "what each job cost, from Slurm accounting"
    assert {mine["user"], theirs["user"]} <= {u["name"] for u in data["users"]}, "totals per user"

    denied = alice.hs("report", "--all-users", check=False)
    assert denied.returncode == 3 and "--all-users is for operators" in denied.stderr and "hpcuser" in denied.stderr
    assert alice.hs("site", "audit", check=False).returncode == 3
    audit = as_operator("site", "audit", "--json", "--socket", SOCKET)
    assert audit.returncode == 0 and isinstance(json.loads(audit.stdout), list), audit.stderr
