"""D6: the stop-time save takes longer than the signal lead time, and the job is killed mid-save.

A real child process trains with periodic checkpoints every 5 steps. It is asked to stop before
step 12, and its stop-time save runs through a slow payload writer (the store's ``writer``), so
Slurm's SIGKILL at the time limit arrives in the middle of it. The next attempt must see no
trace of the interrupted save and resume from the periodic checkpoint of step 10.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from hpcsched.runtime import ElasticTrainer
from hpcsched.runtime.checkpoint import CheckpointStore, write_payload

REPO = Path(__file__).resolve().parents[2]
STOP_BEFORE, PERIOD = 12, 5

CHILD = """
import os, signal, sys, time
import torch
from torch import nn
from torch.utils.data import TensorDataset
from hpcsched.runtime import ElasticTrainer

def slow_writer(path, state):
    # torch.save into memory is quick; the file system is what is slow here: half of the payload
    # reaches the file, then the time limit comes.
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with open(path, "xb") as f:
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
    print("saving", flush=True)
    time.sleep(600)

torch.manual_seed(0)
model = nn.Linear(4, 1)
trainer = ElasticTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), checkpoint_every=int(sys.argv[1]))
x = torch.randn(400, 4)
for epoch in trainer.epochs(1):
    for xb, yb in trainer.batches(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4):
        loss = nn.functional.mse_loss(trainer.model(xb), yb)
        trainer.optimizer.zero_grad(); loss.backward(); trainer.optimizer.step()
        if trainer.global_step + 1 == int(sys.argv[2]):
            trainer.store.writer = slow_writer  # the stop-time save is the slow one
            os.kill(os.getpid(), signal.SIGUSR1)
        trainer.step(loss=loss.item())
print("finished without being killed", flush=True)
"""


def job_env(job_dir: Path, attempt: int) -> dict[str, str]:
    return {"HPCSCHED_JOB_DIR": str(job_dir), "HPCSCHED_ATTEMPT": str(attempt), "HPCSCHED_JOB_ID": "7",
            "HPCSCHED_STORE_ID": "store", "HPCSCHED_JOB_NONCE": "nonce"}


def run_killed_mid_save(job_dir: Path) -> None:
    env = {**os.environ, **job_env(job_dir, 1), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", textwrap.dedent(CHILD), str(PERIOD), str(STOP_BEFORE)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "saving"
        child.send_signal(signal.SIGKILL)  # the time limit: Slurm kills what is still running
        assert child.wait(timeout=60) == -signal.SIGKILL


@pytest.fixture
def killed_job(tmp_path: Path) -> Path:
    (tmp_path / "attempts" / "1").mkdir(parents=True)
    run_killed_mid_save(tmp_path)
    return tmp_path


def test_D6_save_cut_off_at_the_deadline_is_never_visible(killed_job: Path) -> None:
    checkpoints = killed_job / "checkpoints"
    store = CheckpointStore(checkpoints)
    assert store.steps() == [10, 5]
    assert not (killed_job / "attempts" / "1" / "checkpointed").exists()  # the driver will not count it as a stop
    lines = [json.loads(line) for line in (killed_job / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["event"] == "checkpoint"] == [5, 10]
    assert not [r for r in lines if r["event"] == "stop"]


@pytest.mark.usefixtures("restore_signals")
def test_D6_next_attempt_resumes_from_the_periodic_checkpoint(killed_job: Path) -> None:
    checkpoints = killed_job / "checkpoints"
    assert [p for p in checkpoints.iterdir() if p.name.startswith(".tmp-step-12-")]  # the cut-off save
    model = nn.Linear(4, 1)
    trainer = ElasticTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), env=job_env(killed_job, 2))
    try:
        assert trainer.global_step == 10
        assert trainer.resumed_from == checkpoints / "step-0000000010"
        assert sorted(p.name for p in checkpoints.iterdir()) == ["step-0000000005", "step-0000000010"]
    finally:
        trainer.finish(save=False)


def test_writer_seam_defaults_to_the_real_writer(tmp_path: Path) -> None:
    written: list[Path] = []

    def recording_writer(path: Path, state: object) -> None:
        written.append(path)
        write_payload(path, state)

    CheckpointStore(tmp_path, writer=recording_writer).save(3, {"step": 3}, epoch=0, world_size=1)
    loaded = CheckpointStore(tmp_path).load_latest()
    assert loaded is not None and loaded.step == 3
    assert [p.name for p in written] == ["state.pt"]
