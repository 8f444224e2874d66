"""The last hop of reliability E2: SIGUSR1 delivered to torchrun's workers stops them at one agreed,
checkpointed step, and the job resumes from it at another world size.

Real processes, no cluster: ``python -m torch.distributed.run --nproc-per-node 2`` runs
examples/digits_cnn.py on the CPU with HPCSCHED_JOB_DIR set; the test sends SIGUSR1 to the two
worker processes (torchrun does not forward it), then runs attempt 2 with one process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits_cnn.py"
EPOCHS, TRAIN_SAMPLES = 15, 1437  # load_digits has 1,797 images; 80% train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def torchrun(
    job: Path, attempt: int, nproc: int, out: Path, script: Path = EXAMPLE,
    args: tuple[str, ...] = ("--epochs", str(EPOCHS), "--checkpoint-every", "100000"),
) -> subprocess.Popen[bytes]:  # fmt: skip
    """``script`` under torchrun with ``nproc`` workers as attempt ``attempt`` of a job in ``job``."""
    env = {
        **os.environ,
        "HPCSCHED_JOB_DIR": str(job), "HPCSCHED_ATTEMPT": str(attempt), "HPCSCHED_JOB_ID": "e2",
        "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        str(script), *args,
    ]  # fmt: skip
    with open(out, "wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def records(job: Path) -> list[dict[str, Any]]:
    path = job / "progress.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [dict(json.loads(line)) for line in lines]


def wait_for_steps(job: Path, launcher: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(r["event"] == "step" and r["step"] >= 3 for r in records(job)):
        assert launcher.poll() is None, f"torchrun ended before the stop was sent:\n{out.read_text()}"
        assert time.monotonic() < deadline, f"no progress after {timeout} s:\n{out.read_text()}"
        time.sleep(0.05)


def workers(launcher: subprocess.Popen[bytes]) -> list[psutil.Process]:
    children: list[psutil.Process] = psutil.Process(launcher.pid).children()
    assert len(children) == 2 and all(str(EXAMPLE) in c.cmdline() for c in children), children
    return children


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job"
    path.mkdir()
    return path


def test_sigusr1_to_workers_checkpoints_once_and_resumes_at_another_size(job: Path, tmp_path: Path) -> None:
    out1 = tmp_path / "attempt1.log"
    launcher = torchrun(job, 1, 2, out1)
    try:
        wait_for_steps(job, launcher, out1)
        for worker in workers(launcher):
            worker.send_signal(signal.SIGUSR1)
        assert launcher.wait(timeout=60) != 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    log = out1.read_text()
    # torchrun's failure summary gives each worker's exit code: "rank : 1 (local_rank: 1)" then "exitcode : 75".
    codes = dict(re.findall(r"rank\s*:\s*(\d+) \(local_rank.*\n\s*exitcode\s*:\s*(-?\d+)", log))
    assert codes == {"0": "75", "1": "75"}, log

    marker = json.loads((job / "attempts" / "1" / "checkpointed").read_text())
    step = marker["step"]
    checkpoints = sorted((job / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == [f"step-{step:010d}"]  # exactly one, no temporaries
    assert marker["checkpoint"] == str(checkpoints[0])
    manifest = json.loads((checkpoints[0] / "manifest.json").read_text())
    assert manifest["step"] == step and manifest["world_size"] == 2
    stops = [r for r in records(job) if r["event"] == "stop"]
    assert [(r["step"], r["world_size"]) for r in stops] == [(step, 2)]

    out2 = tmp_path / "attempt2.log"
    resumed = torchrun(job, 2, 1, out2)
    try:
        assert resumed.wait(timeout=120) == 0, out2.read_text()
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
            resumed.wait()
    second = [r for r in records(job) if r["attempt"] == 2]
    assert second[0]["event"] == "start" and second[0]["step"] == step and second[0]["world_size"] == 1
    assert second[-1]["event"] == "done"
    assert second[-1]["samples"] == EPOCHS * TRAIN_SAMPLES  # every sample once per epoch across the resize
    final = re.search(r"final val_acc=(\d\.\d+)", out2.read_text())
    assert final is not None and 0.9 <= float(final.group(1)) <= 1.0, out2.read_text()


def test_sigterm_to_torchrun_still_checkpoints(job: Path, tmp_path: Path) -> None:
    """torchrun forwards SIGTERM to its workers (and kills them 30 s later): they stop at a checkpoint."""
    out = tmp_path / "attempt1.log"
    launcher = torchrun(job, 1, 2, out)
    try:
        wait_for_steps(job, launcher, out)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) != 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert "hpcsched: stop (SIGTERM)" in out.read_text()
    step = json.loads((job / "attempts" / "1" / "checkpointed").read_text())["step"]
    assert [p.name for p in (job / "checkpoints").iterdir()] == [f"step-{step:010d}"]
    assert [r["step"] for r in records(job) if r["event"] == "stop"] == [step]
