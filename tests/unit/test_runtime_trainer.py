"""ElasticTrainer in one process (no torchrun): checkpoints, progress, stop on request, exact resume.

The multi-process path (torchrun, two workers, SIGUSR1 to the workers) is tests/runtime/.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from hpcsched.runtime import EXIT_CHECKPOINTED, EXIT_NOT_CHECKPOINTED, ElasticTrainer
from hpcsched.runtime import checkpoint as checkpoint_module

SIZE, BATCH, SEED = 50, 8, 1


pytestmark = pytest.mark.usefixtures("restore_signals")


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SIZE, 4, generator=generator)
    return TensorDataset(x, x.sum(dim=1, keepdim=True), torch.arange(SIZE))


def make_trainer(env: dict[str, str], **kwargs: Any) -> ElasticTrainer:
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
    return ElasticTrainer(model, optimizer, scheduler, env=env, **kwargs)


def train(trainer: ElasticTrainer, epochs: int, seen: list[tuple[int, int]], signal_at: int | None = None) -> None:
    """The user's loop; sends SIGUSR1 to this process just before step ``signal_at`` is reported."""
    data = dataset()
    for epoch in trainer.epochs(epochs):
        for x, y, index in trainer.batches(data, batch_size=BATCH, seed=SEED):
            seen.extend((epoch, i) for i in index.tolist())
            loss = nn.functional.mse_loss(trainer.model(x), y)
            trainer.optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            trainer.optimizer.step()
            if trainer.global_step + 1 == signal_at:
                os.kill(os.getpid(), signal.SIGUSR1)
            trainer.step(loss=loss.item())
        assert trainer.scheduler is not None
        trainer.scheduler.step()  # type: ignore[attr-defined]
    trainer.finish()


def run_until_stop(trainer: ElasticTrainer, epochs: int, seen: list[tuple[int, int]], signal_at: int | None) -> int:
    with pytest.raises(SystemExit) as info:
        train(trainer, epochs, seen, signal_at)
    assert trainer.shutdown_watchdog is not None
    trainer.shutdown_watchdog.cancel()  # in a real job the process is gone by now
    assert isinstance(info.value.code, int)
    return info.value.code


def progress(job: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]


def weights(trainer: ElasticTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.module.parameters()]


def env_for(job: Path, attempt: int) -> dict[str, str]:
    return {"HPCSCHED_JOB_DIR": str(job), "HPCSCHED_ATTEMPT": str(attempt), "HPCSCHED_JOB_ID": "7"}


def test_trains_checkpoints_and_reports(job: Path) -> None:
    trainer = make_trainer(env_for(job, 1), checkpoint_every=5, keep_last=2)
    seen: list[tuple[int, int]] = []
    train(trainer, 2, seen)
    assert Counter(seen) == Counter((e, i) for e in range(2) for i in range(SIZE))  # each sample once per epoch
    assert trainer.global_step == 14  # 50 samples / 8 = 6 steps + a tail of 2 = 7 per epoch
    assert trainer.store.steps() == [14, 10]
    records = progress(job)
    assert records[0]["event"] == "start" and records[0]["step"] == 0 and records[0]["elastic"] is True
    assert records[0]["total_steps"] == 14 and records[0]["global_batch"] == BATCH and records[0]["world_size"] == 1
    assert [r["step"] for r in records if r["event"] == "checkpoint"] == [5, 10, 14]
    assert records[-1]["event"] == "done" and records[-1]["samples"] == 2 * SIZE and records[-1]["step"] == 14


@pytest.mark.parametrize(
    ("stop_at", "epoch", "position"),
    [(9, 1, 2 * BATCH), (7, 0, SIZE), (1, 0, BATCH)],
    ids=["mid-epoch", "end-of-epoch", "first-step"],
)
def test_stop_on_sigusr1_exits_75_and_resume_is_exact(job: Path, stop_at: int, epoch: int, position: int) -> None:
    """Stop after ``stop_at``, resume as attempt 2: every sample once, same final weights as without the stop."""
    (job.parent / "reference").mkdir()
    reference = make_trainer(env_for(job.parent / "reference", 1), checkpoint_every=None)
    train(reference, 3, [])

    first = make_trainer(env_for(job, 1), checkpoint_every=4)
    seen: list[tuple[int, int]] = []
    assert run_until_stop(first, 3, seen, signal_at=stop_at) == EXIT_CHECKPOINTED
    checkpoint = job / "checkpoints" / f"step-{stop_at:010d}"
    marker = json.loads((job / "attempts" / "1" / "checkpointed").read_text())
    assert marker["step"] == stop_at and marker["checkpoint"] == str(checkpoint)
    assert first.store.steps()[0] == stop_at
    assert [(r["event"], r["step"]) for r in progress(job)][-2:] == [("checkpoint", stop_at), ("stop", stop_at)]

    second = make_trainer(env_for(job, 2), checkpoint_every=4)
    assert second.resumed_from == checkpoint
    assert (second.epoch, second.position.position, second.global_step) == (epoch, position, stop_at)
    train(second, 3, seen)
    assert Counter(seen) == Counter((e, i) for e in range(3) for i in range(SIZE))
    starts = [r for r in progress(job) if r["event"] == "start"]
    assert [(r["attempt"], r["step"]) for r in starts] == [(1, 0), (2, stop_at)]
    for got, want in zip(weights(second), weights(reference), strict=True):
        assert torch.equal(got, want)


def test_stop_file_fallback(job: Path) -> None:
    (job / "stop-request").touch()
    trainer = make_trainer(env_for(job, 1), checkpoint_every=None)
    assert run_until_stop(trainer, 1, [], signal_at=None) == EXIT_CHECKPOINTED
    assert trainer.global_step == 1 and trainer.store.steps() == [1]
    assert not (job / "stop-request").exists()  # consumed, so the next attempt does not stop at once


def test_failed_periodic_save_is_reported_and_training_goes_on(
    job: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def disk_full(path: Path, payload: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module, "write_payload", disk_full)
    trainer = make_trainer(env_for(job, 1), checkpoint_every=3)
    train(trainer, 1, [])
    assert trainer.global_step == 7 and trainer.store.steps() == []
    assert "checkpoint not saved: no space left on device at " in capsys.readouterr().err
    assert [p.name for p in (job / "checkpoints").iterdir()] == []


def test_failed_stop_save_exits_74_without_marker(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = make_trainer(env_for(job, 1), checkpoint_every=2)

    def disk_full(path: Path, payload: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    original = checkpoint_module.write_payload

    def fail_from_step_3(path: Path, payload: object) -> None:
        (disk_full if trainer.global_step >= 3 else original)(path, payload)

    monkeypatch.setattr(checkpoint_module, "write_payload", fail_from_step_3)
    assert run_until_stop(trainer, 1, [], signal_at=3) == EXIT_NOT_CHECKPOINTED
    assert not (job / "attempts" / "1" / "checkpointed").exists()
    assert trainer.store.steps() == [2]  # the periodic checkpoint is what a resume will use


def test_outside_hpcsched_checkpoints_go_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = make_trainer({}, checkpoint_every=100)
    assert trainer.world_size == 1 and trainer.job.job_dir is None
    train(trainer, 1, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000000007"]


def test_leftover_temporaries_are_cleaned_at_start(job: Path) -> None:
    leftover = job / "checkpoints" / ".tmp-step-5-abc"
    leftover.mkdir(parents=True)
    make_trainer(env_for(job, 2)).stop_request.uninstall()
    assert not leftover.exists()
