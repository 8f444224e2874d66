"""Invariant 1, intent before side effect: a daemon killed around sbatch loses no job and never
submits one twice (reliability A1, A2)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import UserSession, copy_example


def slurm_jobs_with_tag(tag: str) -> list[int]:
    out = subprocess.run(["sacct", "--json", "-D", "--allusers", "--starttime=now-1hour", "--endtime=now"],
                         capture_output=True, text=True, timeout=60, check=True)
    ids = {j["job_id"] for j in json.loads(out.stdout)["jobs"] if (j.get("comment") or {}).get("job") == tag}
    out = subprocess.run(["squeue", "--json"], capture_output=True, text=True, timeout=60, check=True)
    ids |= {j["job_id"] for j in json.loads(out.stdout)["jobs"] if j.get("comment") == tag}
    return sorted(ids)


@pytest.mark.parametrize("fault", ["before_sbatch", "after_sbatch"])
def test_A1_A2_daemon_killed_around_sbatch_submits_exactly_once(session: UserSession, fault: str) -> None:
    copy_example(session, "allreduce.py")
    crashed = session.hs("run", "allreduce.py", "--nodes", "1", check=False, env={"HPCSCHED_FAULT": fault})
    assert crashed.returncode != 0, "the daemon was meant to die while handling the request"
    assert session.hs("daemon", "status", check=False).returncode == 1, "daemon should be dead"

    session.hs("daemon", "start")  # no fault this time: it must recover the committed job
    jobs = json.loads(session.hs("status", "--json").stdout)
    assert [j["id"] for j in jobs] == [1], "the job must not be lost"
    info = session.wait(1)
    assert info["state"] == "COMPLETED", session.logs(1)
    store_id = json.loads(session.hs("daemon", "status", "--json").stdout)["store_id"]
    assert slurm_jobs_with_tag(f"hpcsched:{store_id}:1") == [info["slurm_job_id"]]
