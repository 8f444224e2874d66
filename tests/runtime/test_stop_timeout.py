"""Reliability D6: a stop-time save that does not finish in time ends the process anyway.

A real process whose checkpoint writer hangs gets SIGUSR1; the watchdog ends it with 74 after
``shutdown_timeout_s``, no partial checkpoint is visible, and the periodic one stays the newest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hpcsched.runtime import EXIT_NOT_CHECKPOINTED, CheckpointStore

REPO = Path(__file__).resolve().parents[2]

HANGING_SAVE = """
import time
import torch
from torch import nn
from hpcsched.runtime import ElasticTrainer, checkpoint

real_write = checkpoint.write_payload

def write_then_hang(path, state):
    real_write(path, state)
    if trainer.stop_request.local_reason():  # the stop-time save: storage that hangs
        time.sleep(600)

checkpoint.write_payload = write_then_hang
model = nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
trainer = ElasticTrainer(model, optimizer, checkpoint_every=5, shutdown_timeout_s=1.0)
data = torch.utils.data.TensorDataset(torch.randn(10000, 2), torch.randn(10000, 1))
for epoch in trainer.epochs(1):
    for x, y in trainer.batches(data, batch_size=4):
        loss = ((trainer.model(x) - y) ** 2).mean()
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        trainer.step(loss=loss.item())
        time.sleep(0.01)
"""


def test_hanging_stop_save_is_cut_off_and_leaves_the_periodic_checkpoint(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HPCSCHED_JOB_DIR": str(tmp_path), "HPCSCHED_ATTEMPT": "1"}
    with subprocess.Popen([sys.executable, "-c", textwrap.dedent(HANGING_SAVE)], env=env, cwd=tmp_path) as child:
        progress = tmp_path / "progress.jsonl"
        deadline = time.monotonic() + 60
        while not (progress.exists() and '"event": "checkpoint", "step": 5' in progress.read_text()):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGUSR1)
        started = time.monotonic()
        assert child.wait(timeout=30) == EXIT_NOT_CHECKPOINTED
        assert time.monotonic() - started < 10
    store = CheckpointStore(tmp_path / "checkpoints")
    periodic = [r["step"] for r in map(json.loads, progress.read_text().splitlines()) if r["event"] == "checkpoint"]
    assert store.steps() == sorted(periodic, reverse=True)[:3] and all(s % 5 == 0 for s in periodic)
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == max(periodic)
    assert len([p for p in store.directory.iterdir() if p.name.startswith(".tmp-step-")]) == 1  # never loaded
    assert not (tmp_path / "attempts" / "1" / "checkpointed").exists()
