"""``hpcsched report`` against the real cluster: four small one-node jobs (completed, failed,
cancelled, requeued by ``scontrol requeue`` while it runs) and the report's per-job run time,
node count and state compared with what ``sacct`` prints; then the same report with a ``sacct``
on PATH that fails, and one that does not answer in time.

Until ``report`` is registered in the CLI group, the report runs as
``python -m hpcsched.cli.report`` from the installed environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from conftest import CLI, FINAL, UserSession, _chown_tree

PYTHON = str(Path(CLI).parent / "python")
REPORT = [PYTHON, "-m", "hpcsched.cli.report"]
SCRIPTS = {
    "ok": "import time\nprint('ok', flush=True)\ntime.sleep(2)\n",
    "fail": "import sys, time\ntime.sleep(1)\nsys.exit(3)\n",
    "cancelled": "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n",
    "requeued": "import time\nprint('running', flush=True)\ntime.sleep(8)\n",
}
EXPECTED_STATE = {"ok": "COMPLETED", "fail": "FAILED", "cancelled": "CANCELLED", "requeued": "COMPLETED"}


def run_jobs(session: UserSession) -> dict[str, int]:
    jobs = {}
    for name, text in SCRIPTS.items():
        session.write(f"{name}.py", text)
        jobs[name] = session.run_job(f"{name}.py", "--nodes", "1", "--name", name)
    return jobs


def drive(session: UserSession, jobs: dict[str, int], timeout: float = 300) -> dict[str, dict[str, Any]]:
    """Cancel one job and requeue another once they run; return every job once all have ended."""
    cancelled = requeued = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = {name: session.status(job) for name, job in jobs.items()}
        if not cancelled and info["cancelled"]["state"] == "RUNNING":
            session.hs("cancel", str(jobs["cancelled"]))
            cancelled = True
        req = info["requeued"]
        if not requeued and req["state"] == "RUNNING" and (req["elapsed"] or 0) >= 2:
            subprocess.run(["scontrol", "requeue", str(req["slurm_job_id"])], check=True, timeout=30)
            requeued = True
        if requeued and len(req["attempts"]) >= 2 and all(i["state"] in FINAL for i in info.values()):
            return info
        time.sleep(1)
    raise AssertionError(f"jobs did not end within {timeout} s: {info}")


def sacct_runs(store_id: str, slurm_ids: list[int], timeout: float = 60) -> dict[int, list[dict[str, str]]]:
    """sacct's own text output: every run (-D) of our jobs, by hpcsched job id, once all ended."""
    argv = ["sacct", "-P", "-n", "-D", "-X", "--allusers", "--starttime=now-1hour", "--endtime=now",
            "--jobs=" + ",".join(map(str, slurm_ids)), "-o", "JobIDRaw,ElapsedRaw,NNodes,State,Comment"]
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
        runs: dict[int, list[dict[str, str]]] = {}
        for line in out.splitlines():
            slurm_id, elapsed, nodes, state, comment = line.split("|", 4)
            tag = comment.split(":")
            if len(tag) >= 3 and tag[:2] == ["hpcsched", store_id]:
                runs.setdefault(int(tag[2]), []).append(
                    {"slurm_id": slurm_id, "elapsed": elapsed, "nodes": nodes, "state": state.split()[0]})
        ended = all(r["state"] not in ("RUNNING", "PENDING", "COMPLETING") for rs in runs.values() for r in rs)
        if (ended and sum(len(rs) for rs in runs.values()) >= 5) or time.monotonic() > deadline:
            return runs
        time.sleep(1)


def report(session: UserSession, *args: str) -> subprocess.CompletedProcess[str]:
    return session.as_user([*REPORT, "--since", "1h", *args], timeout=120)


def fake_sacct(session: UserSession, body: str) -> UserSession:
    """The session with a ``sacct`` first on PATH that runs ``body`` instead. hpcsched runs Slurm's
    commands from the folder that holds ``sbatch`` (its explicit environment), so a pass-through
    ``sbatch`` goes there too."""
    folder = session.root / "fake-bin"
    folder.mkdir(exist_ok=True)
    for name, text in (("sacct", body), ("sbatch", f'exec {shutil.which("sbatch")} "$@"')):
        path = folder / name
        path.write_text(f"#!/bin/sh\n{text}\n")
        path.chmod(0o755)
    _chown_tree(folder, session.user)
    return replace(session, env={**session.env, "PATH": f"{folder}:{session.env['PATH']}"})


def installed_report(session: UserSession) -> None:
    probe = session.as_user([*REPORT, "--help"])
    assert probe.returncode == 0, f"the installed hpcsched has no report command (run scripts/refresh-site): {probe.stderr}"


def cancel_in_slurm(session: UserSession, jobs: dict[str, int]) -> None:
    """Nothing of this test stays in the queue, whatever failed (a requeued job waits in it)."""
    for job in jobs.values():
        ids = {a["slurm_job_id"] for a in session.status(job)["attempts"] if a["slurm_job_id"]}
        for slurm_id in ids:
            subprocess.run(["scancel", str(slurm_id)], capture_output=True, timeout=30)


def test_report_matches_sacct_and_survives_an_accounting_outage(session: UserSession) -> None:
    installed_report(session)
    jobs = run_jobs(session)
    try:
        info = drive(session, jobs)
    finally:
        cancel_in_slurm(session, jobs)
    store_id = json.loads(session.hs("daemon", "status", "--json").stdout)["store_id"]
    slurm_ids = sorted({a["slurm_job_id"] for i in info.values() for a in i["attempts"] if a["slurm_job_id"]})
    truth = sacct_runs(store_id, slurm_ids)

    out = report(session, "--format", "json")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    data = json.loads(out.stdout)
    assert data["accounting"] == {"available": True, "error": None}
    reported = {j["name"]: j for j in data["jobs"] if j["id"] in jobs.values()}
    assert sorted(reported) == sorted(jobs)
    for name, job in reported.items():
        runs = truth[job["id"]]
        assert job["accounting"] == "ok", name
        assert job["run_time"] == sum(int(r["elapsed"]) for r in runs), (name, job, runs)
        assert job["nodes"] == int(runs[-1]["nodes"]) == 1, name
        assert job["slurm_state"] == runs[-1]["state"] == job["state"] == EXPECTED_STATE[name], name
        assert [a["usage"]["elapsed"] for a in job["attempts"]] == [int(r["elapsed"]) for r in runs], name
    requeued = reported["requeued"]["attempts"]
    assert [(a["number"], a["reason"], a["usage"]["slurm_state"]) for a in requeued] == [
        (1, "submit", "REQUEUED"), (2, "requeue", "COMPLETED")]

    down = report(fake_sacct(session, "echo 'sacct: error: Problem talking to the database: Connection refused' >&2\nexit 1"),
                  "--format", "json")
    assert down.returncode == 0, down.stderr
    assert "Slurm accounting unavailable" in down.stderr and "Connection refused" in down.stderr
    blind = json.loads(down.stdout)
    assert blind["accounting"]["available"] is False
    for job in blind["jobs"]:
        if job["id"] in jobs.values():
            assert job["state"] == EXPECTED_STATE[job["name"]]
            assert (job["accounting"], job["run_time"], job["node_hours"], job["nodes"]) == ("unavailable", None, None, None)
    assert [a["reason"] for j in blind["jobs"] if j["name"] == "requeued" for a in j["attempts"]] == ["submit", "requeue"]

    started = time.monotonic()
    slow = report(fake_sacct(session, "exec sleep 60"), "--sacct-timeout", "2")
    assert slow.returncode == 0, slow.stderr
    assert time.monotonic() - started < 30
    assert "no answer within 2 s" in slow.stderr
    assert "? = unknown: Slurm accounting could not be read" in slow.stdout
    assert all(name in slow.stdout for name in jobs)


def test_a_job_cancelled_while_pending_keeps_its_queue_wait(session: UserSession) -> None:
    """Regression: a job cancelled in the queue had its wait counted up to "now", growing at every
    report. It waited from submission until it was cancelled, and no longer."""
    installed_report(session)
    session.write("later.py", "print('never runs')\n")
    job = session.run_job("later.py", "--nodes", "1", "--name", "later", "--sbatch=--begin=now+1hour")
    session.wait(job, {"PENDING"}, timeout=60)
    time.sleep(2)
    session.hs("cancel", str(job), "--wait")
    waits = []
    for _ in range(2):
        deadline = time.monotonic() + 60
        while True:
            data = json.loads(report(session, "--job", str(job), "--format", "json").stdout)
            (attempt,) = data["jobs"][0]["attempts"]
            usage = attempt["usage"]
            if (usage and usage["end_time"]) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert usage is not None and usage["slurm_state"] == "CANCELLED", attempt
        waits.append(usage["queue_wait"])
        time.sleep(3)
    assert waits[0] == waits[1] and 1 <= waits[0] < 60, waits
