"""The first hour on the local cluster (issue 14, item 8): a shrink in place is no failure for
Slurm's accounting, prints no torchrun traceback, leaves no file in the work directory, and the
progress shown does not go back."""

from __future__ import annotations

import subprocess

from conftest import UserSession, copy_example
from test_elastic import running_attempt

# wide: the partition other tests leave free more often; 2 nodes, then 1
ARGS = ["digits_cnn.py", "-p", "wide", "--nodes", "1-2", "--start-nodes", "2", "--",
        "--epochs", "8", "--checkpoint-every", "20", "--step-delay", "0.1"]


def sacct_steps(slurm_job_id: int) -> list[list[str]]:
    out = subprocess.run(["sacct", "-j", str(slurm_job_id), "-n", "-P", "-o", "JobID,State,ExitCode"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def done(session: UserSession, job: int) -> float:
    p = session.status(job)["progress"]
    return float(p["samples"]) / float(p["total_samples"])


def test_a_shrink_in_place_is_no_failed_step_and_leaves_no_traceback_or_file(session: UserSession) -> None:
    copy_example(session, "digits_cnn.py")
    job = session.run_job(*ARGS)
    running_attempt(session, job, 1, nodes=2)
    before = done(session, job)
    session.hs("resize", str(job), "--nodes", "1")
    running_attempt(session, job, 2, nodes=1)
    assert done(session, job) >= before, "the share of samples done must not go back after a shrink"
    info = session.wait(job, timeout=600)
    assert info["state"] == "COMPLETED", session.logs(job)
    assert [(a["number"], a["reason"], a["nodes"]) for a in info["attempts"]] == [(1, "submit", 2), (2, "resize", 1)]

    records = sacct_steps(info["slurm_job_id"])  # Slurm keeps the pre-shrink records as RESIZING
    assert all(state in ("COMPLETED", "RESIZING") and code == "0:0" for _, state, code in records), records
    steps = {step: state for step, state, _ in records}
    slurm_id = info["slurm_job_id"]
    assert (steps.get(f"{slurm_id}.0"), steps.get(f"{slurm_id}.1")) == ("COMPLETED", "COMPLETED"), records
    first = session.logs(job, attempt=1)
    assert "stopped at a checkpoint as asked" in first
    assert "ChildFailedError" not in first and "Traceback" not in first, first[-3000:]
    assert not list(session.workdir.glob("slurm_job_*_resize.*"))  # nor anywhere the user works
