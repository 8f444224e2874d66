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
from torch import nn

from hpcsched.runtime import checkpoint as checkpoint_module
from hpcsched.runtime.checkpoint import MANIFEST, PAYLOAD, CheckpointInvalid, CheckpointNotSaved, CheckpointStore
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
