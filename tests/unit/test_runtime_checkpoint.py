"""Checkpoint store: commit protocol, rotation and fallback (invariant 5; reliability D1, D2, D3, D5, D7)."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_runtime_trainer import make_trainer, train
from torch import nn

from hpcsched.runtime import checkpoint as checkpoint_module
from hpcsched.runtime.checkpoint import (
    MANIFEST,
    PAYLOAD,
    CheckpointForeign,
    CheckpointInvalid,
    CheckpointNotSaved,
    CheckpointStore,
)
from hpcsched.runtime.environment import JobIdentity, job_from_env
from hpcsched.runtime.sampler import epoch_permutation, plan_steps, shard
from hpcsched.runtime.snapshot import DataPosition, capture, restore

REPO = Path(__file__).resolve().parents[2]


def state(step: int) -> dict[str, Any]:
    return {"format": 1, "weights": torch.full((4, 4), float(step)), "step": step}


def test_round_trip(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ckpt")
    path = store.save(7, state(7), epoch=2, world_size=4)
    assert path == tmp_path / "ckpt" / "step-0000000007"
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, PAYLOAD]
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["step"] == 7 and manifest["epoch"] == 2 and manifest["world_size"] == 4
    assert manifest["format"] == 1 and isinstance(manifest["time"], float)
    [entry] = manifest["files"]
    assert entry["name"] == PAYLOAD and entry["size"] == (path / PAYLOAD).stat().st_size and len(entry["sha256"]) == 64
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == 7 and loaded.path == path
    assert torch.equal(loaded.state["weights"], torch.full((4, 4), 7.0))
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [path.name]  # no temporaries left


def test_empty_store_loads_nothing(tmp_path: Path) -> None:
    assert CheckpointStore(tmp_path / "missing").load_latest() is None


def test_keep_last_three_of_ten_saves(tmp_path: Path) -> None:
    """D5: exactly 3 valid checkpoints remain and the newest is among them."""
    store = CheckpointStore(tmp_path, keep_last=3)
    for step in range(1, 11):
        store.save(step, state(step), epoch=0, world_size=1)
        assert store.steps()[0] == step
    assert store.steps() == [10, 9, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000000008", "step-0000000009", "step-0000000010"]
    for step in store.steps():
        assert store.load(step).state["step"] == step


def test_keep_last_must_keep_the_newest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="newest"):
        CheckpointStore(tmp_path, keep_last=0)


def test_rotation_never_deletes_the_checkpoint_just_saved(tmp_path: Path) -> None:
    """A newer checkpoint that failed to load at resume must not push the new one out."""
    store = CheckpointStore(tmp_path, keep_last=1)
    store.save(100, state(100), epoch=0, world_size=1)
    (store.path_for(100) / PAYLOAD).write_bytes(b"corrupt")
    store.save(60, state(60), epoch=0, world_size=1)
    assert store.steps() == [100, 60]
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == 60


def test_saving_a_step_again_replaces_it(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(5, state(5), epoch=0, world_size=1)
    (store.path_for(5) / PAYLOAD).write_bytes(b"corrupt")
    store.save(5, state(55), epoch=0, world_size=1)
    assert store.load(5).state["step"] == 55
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000000005"]


# D1: a writer killed with SIGKILL at a fault point inside save(), in a real child process.
KILLED_WRITER = """
import os, sys, time
from pathlib import Path
import torch
from hpcsched.runtime import checkpoint
from hpcsched.runtime.checkpoint import CheckpointStore

def stall():
    print("stalled", flush=True)
    time.sleep(600)

def half_payload(path, state):
    with open(path, "xb") as f:
        f.write(b"PK" + os.urandom(1 << 20))
        f.flush()
    stall()

def before_rename(tmp, final):
    stall()

if sys.argv[2] == "payload":
    checkpoint.write_payload = half_payload
else:
    CheckpointStore._commit = lambda self, tmp, final: before_rename(tmp, final)
CheckpointStore(Path(sys.argv[1])).save(2, {"format": 1, "big": torch.zeros(1 << 18), "step": 2}, epoch=0, world_size=1)
"""


@pytest.mark.parametrize("fault", ["payload", "before-rename"])
def test_sigkill_mid_write_leaves_previous_checkpoint(tmp_path: Path, fault: str) -> None:
    store = CheckpointStore(tmp_path)
    store.save(1, state(1), epoch=0, world_size=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(tmp_path), fault]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "stalled"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-step-2-")]
    assert len(leftovers) == 1 and (leftovers[0] / PAYLOAD).exists()
    assert store.steps() == [1]
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == 1
    assert store.clean_temporary() == leftovers
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000000001"]


def corrupt(path: Path, how: str) -> None:
    payload = path / PAYLOAD
    if how == "truncated":
        payload.write_bytes(payload.read_bytes()[:-100])
    elif how == "bit-flipped":
        data = bytearray(payload.read_bytes())
        data[len(data) // 2] ^= 0x01
        payload.write_bytes(bytes(data))
    elif how == "no-manifest":
        (path / MANIFEST).unlink()
    elif how == "bad-json":
        (path / MANIFEST).write_text("{not json")
    elif how == "payload-missing":
        payload.unlink()


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("truncated", "truncated"),
        ("bit-flipped", "sha256"),
        ("no-manifest", "manifest.json is missing"),
        ("bad-json", "manifest.json is unreadable"),
        ("payload-missing", "state.pt is unreadable"),
    ],
)
def test_damaged_newest_falls_back_with_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, reason: str
) -> None:
    """D2: the damaged newest checkpoint is skipped with a warning naming it and why."""
    store = CheckpointStore(tmp_path)
    store.save(1, state(1), epoch=0, world_size=1)
    newest = store.save(2, state(2), epoch=0, world_size=1)
    corrupt(newest, how)
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == 1
    err = capsys.readouterr().err
    assert str(newest) in err and reason in err and "trying the one before" in err


class RunsCode:
    """An object whose unpickling would run code: weights_only loading must refuse it (G6)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def test_checksum_valid_but_unloadable_payload_falls_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = CheckpointStore(tmp_path)
    store.save(1, state(1), epoch=0, world_size=1)
    store.save(2, {"format": 1, "evil": RunsCode()}, epoch=0, world_size=1)  # checksums match
    with pytest.raises(CheckpointInvalid, match=r"torch\.load failed"):
        store.load(2)
    loaded = store.load_latest()
    assert loaded is not None and loaded.step == 1
    assert "torch.load failed" in capsys.readouterr().err


def test_unknown_format_is_invalid(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save(1, state(1), epoch=0, world_size=1)
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "format": 99}))
    with pytest.raises(CheckpointInvalid, match="format 99"):
        store.load(1)


def test_enospc_aborts_save_and_keeps_old_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D3: the save is aborted, its temporary directory removed, the message names the path."""
    store = CheckpointStore(tmp_path, keep_last=2)
    store.save(1, state(1), epoch=0, world_size=1)
    store.save(2, state(2), epoch=0, world_size=1)

    def disk_full(path: Path, payload: object) -> None:
        with open(path, "xb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint_module, "write_payload", disk_full)
    with pytest.raises(CheckpointNotSaved) as info:
        store.save(3, state(3), epoch=0, world_size=1)
    message = str(info.value)
    assert message.startswith("checkpoint not saved: no space left on device at ")
    assert str(store.path_for(3)) in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000000001", "step-0000000002"]
    assert [store.load(s).state["step"] for s in store.steps()] == [2, 1]


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CheckpointNotSaved, match=r"checkpoint not saved: .* at "):
        CheckpointStore(blocker / "ckpt").save(1, state(1), epoch=0, world_size=1)


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def trained(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    torch.manual_seed(seed)
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(3):
        model(torch.randn(5, 3)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return model, optimizer, scheduler


def test_resume_at_world_size_2_of_a_checkpoint_saved_at_4(tmp_path: Path) -> None:
    """D7: model, optimizer, scheduler, RNG and data position come back; the data continues exactly."""
    size, batch, seed, epoch = 103, 5, 11, 3
    model, optimizer, scheduler = trained(0)
    consumed = [p for b, e in list(plan_steps(size, 0, batch * 4, 4))[:3] for p in range(b, e)]
    position = DataPosition(epoch=epoch, position=len(consumed), step=40, samples=1234)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    payload = capture(model, optimizer, scheduler, {}, position, world_size=4, device=torch.device("cpu"))
    expected_rng = (torch.rand(3), random.random(), np.random.rand())
    store = CheckpointStore(tmp_path)
    store.save(40, payload, epoch=epoch, world_size=4)

    fresh_model, fresh_optimizer, fresh_scheduler = trained(1)
    loaded = store.load_latest()
    assert loaded is not None and loaded.manifest["world_size"] == 4
    got = restore(loaded.state, fresh_model, fresh_optimizer, fresh_scheduler, {}, device=torch.device("cpu"))
    assert got == position
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[name], tensor)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    for a, b in zip(fresh_optimizer.state_dict()["state"].values(), optimizer.state_dict()["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert torch.equal(torch.rand(3), expected_rng[0])
    assert random.random() == expected_rng[1] and np.random.rand() == expected_rng[2]

    order = epoch_permutation(size, seed, got.epoch)
    rest = [p for b, e in plan_steps(size, got.position, batch * 2, 2) for r in range(2) for p in shard(b, e, r, 2)]
    assert sorted(order[p] for p in consumed + rest) == list(range(size))


# --- D4: checkpoints carry the job's identity ------------------------------------------------------

MINE = JobIdentity(store_id="store-a", job_id="1", nonce="n-mine")


def test_the_manifest_records_the_jobs_identity(tmp_path: Path) -> None:
    path = CheckpointStore(tmp_path, identity=MINE).save(3, state(3), epoch=0, world_size=1)
    assert json.loads((path / MANIFEST).read_text())["job"] == {"store_id": "store-a", "job_id": "1", "nonce": "n-mine"}


@pytest.mark.parametrize(("writer", "named"), [
    (JobIdentity("store-b", "1", "n-other"), "job 1 of store store-b"),  # another store's job 1
    (JobIdentity("store-a", "1", "n-earlier"), "submission n-earlier"),  # an earlier submission of the same ids
    (None, "carries no job identity"),  # written by an earlier version
])
def test_D4_a_stale_higher_step_checkpoint_of_another_job_is_never_resumed_nor_deleted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], writer: JobIdentity | None, named: str) -> None:
    CheckpointStore(tmp_path, identity=writer).save(500, state(500), epoch=9, world_size=1)
    mine = CheckpointStore(tmp_path, keep_last=1, identity=MINE)
    assert mine.load_latest() is None  # a fresh job: trains from step 0
    err = capsys.readouterr().err
    assert f"ignoring checkpoint {mine.path_for(500)}" in err and named in err and "neither resumed nor deleted" in err
    with pytest.raises(CheckpointForeign):
        mine.load(500)
    for step in (10, 20, 30):
        mine.save(step, state(step), epoch=0, world_size=1)
    loaded = mine.load_latest()
    assert loaded is not None and loaded.step == 30 and loaded.state["step"] == 30
    assert mine.steps() == [500, 30]  # rotation removed this job's older ones, never the other job's


def test_D5_keep_last_counts_only_the_jobs_own_checkpoints(tmp_path: Path) -> None:
    theirs = CheckpointStore(tmp_path, identity=JobIdentity("store-b", "7", "x"))
    theirs.save(20, state(20), epoch=0, world_size=1)
    mine = CheckpointStore(tmp_path, keep_last=3, identity=MINE)
    for step in range(1, 11):
        mine.save(step, state(step), epoch=0, world_size=1)
    assert mine.steps() == [20, 10, 9, 8]
    assert theirs.load(20).state["step"] == 20
    for step in (10, 9, 8):
        assert mine.load(step).state["step"] == step


def test_another_jobs_checkpoint_at_the_same_step_is_moved_aside_not_deleted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    CheckpointStore(tmp_path, identity=JobIdentity("store-b", "1", "x")).save(5, state(-5), epoch=0, world_size=1)
    mine = CheckpointStore(tmp_path, identity=MINE)
    mine.save(5, state(5), epoch=0, world_size=1)
    loaded = mine.load_latest()
    assert loaded is not None and loaded.state["step"] == 5
    (aside,) = tmp_path.glob("step-0000000005.foreign-*")
    assert torch.load(aside / PAYLOAD, weights_only=True)["step"] == -5
    assert f"moved another job's checkpoint {mine.path_for(5)} aside to {aside}" in capsys.readouterr().err


def test_a_job_without_an_identity_resumes_any_valid_checkpoint(tmp_path: Path) -> None:
    """Outside hpcsched (``python train.py``), or a job an earlier version submitted: as before."""
    CheckpointStore(tmp_path, identity=MINE).save(4, state(4), epoch=0, world_size=1)
    loaded = CheckpointStore(tmp_path).load_latest()
    assert loaded is not None and loaded.step == 4


def test_the_identity_comes_from_the_launchers_variables_and_needs_all_three() -> None:
    env = {"HPCSCHED_STORE_ID": "store-a", "HPCSCHED_JOB_ID": "1", "HPCSCHED_JOB_NONCE": "n-mine"}
    assert job_from_env(env).identity == MINE
    assert job_from_env({**env, "HPCSCHED_JOB_NONCE": ""}).identity is None


@pytest.mark.usefixtures("restore_signals")
def test_D4_a_fresh_job_trains_from_step_0_beside_an_earlier_submissions_checkpoint(job: Path) -> None:
    """Same store, same job id, another submission (a store recreated under the same id)."""
    earlier = CheckpointStore(job / "checkpoints", identity=JobIdentity("store-a", "1", "n-earlier"))
    earlier.save(999, state(999), epoch=5, world_size=1)
    env = {"HPCSCHED_JOB_DIR": str(job), "HPCSCHED_STORE_ID": "store-a", "HPCSCHED_JOB_ID": "1",
           "HPCSCHED_JOB_NONCE": "n-mine"}
    trainer = make_trainer(env, checkpoint_every=5)
    assert trainer.resumed_from is None and trainer.global_step == 0
    train(trainer, 1, [])
    assert trainer.global_step == 7 and trainer.store.steps() == [999, 7, 5]
