"""A job directory and a checkpoint belong to exactly one job (reliability item 2, D4), and a
symbolic link out of the work directory is refused at submission (item 7), on the real cluster."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

from conftest import UserSession

# Trains 2 epochs of 8 steps and says where it started and how many steps it trained. The
# checkpoint directory comes from the first argument (a directory jobs share, as a user might set
# HPCSCHED_CHECKPOINT_DIR), or is the job's own.
TRAIN = """\
import os, sys
if len(sys.argv) > 1:
    os.environ["HPCSCHED_CHECKPOINT_DIR"] = sys.argv[1]
import torch
from torch import nn
from torch.utils.data import TensorDataset
from hpcsched.runtime import ElasticTrainer

torch.manual_seed(0)
model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
trainer = ElasticTrainer(model, optimizer, checkpoint_every=4)
print(f"START step={trainer.global_step}", flush=True)
x = torch.randn(64, 4)
data = TensorDataset(x, x.sum(dim=1, keepdim=True))
trained = 0
for epoch in trainer.epochs(2):
    for xb, yb in trainer.batches(data, batch_size=8, seed=0):
        loss = nn.functional.mse_loss(trainer.model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        trainer.step(loss=loss.item())
        trained += 1
trainer.finish()
print(f"TRAINED steps={trained} final={trainer.global_step}", flush=True)
"""


def chown_to(session: UserSession, *paths: Path) -> None:
    pw = pwd.getpwnam(session.user)
    for path in paths:
        os.lchown(path, pw.pw_uid, pw.pw_gid)


def test_D4_a_checkpoint_planted_where_the_new_jobs_directory_goes_is_refused_never_resumed(
        session: UserSession) -> None:
    session.write("train.py", TRAIN)
    first = session.run_job("train.py", "--nodes", "1")
    assert session.wait(first)["state"] == "COMPLETED", session.logs(first)
    first_dir = Path(session.status(first)["job_dir"])
    store_id = first_dir.name.rsplit("-", 1)[0]
    planted = first_dir.parent / f"{store_id}-{first + 1}"
    stale = planted / "checkpoints" / "step-0000000500"
    stale.parent.mkdir(parents=True)
    os.rename(first_dir / "checkpoints" / "step-0000000016", stale)  # another run's, higher step
    chown_to(session, planted, planted / "checkpoints")

    refused = session.hs("run", "train.py", "--nodes", "1", check=False)
    assert refused.returncode != 0
    assert f"the job directory {planted} exists before submission" in refused.stderr
    info = session.status(first + 1)
    assert info["state"] == "FAILED" and info["slurm_job_id"] is None
    assert sorted(p.name for p in (planted / "checkpoints").iterdir()) == ["step-0000000500"]


def test_D4_another_jobs_checkpoint_in_a_shared_checkpoint_directory_is_ignored_and_kept(
        session: UserSession) -> None:
    session.write("train.py", TRAIN)
    shared = session.workdir / "shared-checkpoints"
    first = session.run_job("train.py", "--nodes", "1", "--", str(shared))
    assert session.wait(first)["state"] == "COMPLETED", session.logs(first)
    assert "TRAINED steps=16 final=16" in session.logs(first)

    second = session.run_job("train.py", "--nodes", "1", "--", str(shared))
    assert session.wait(second)["state"] == "COMPLETED", session.logs(second)
    log = session.logs(second)
    assert "START step=0" in log and "TRAINED steps=16 final=16" in log  # never COMPLETED after 0 steps
    assert f"ignoring checkpoint {shared / 'step-0000000016'}: it belongs to another job (job {first} " in log
    owners = [json.loads((p / "manifest.json").read_text())["job"]["job_id"] for p in shared.glob("step-*")]
    assert str(first) in owners and str(second) in owners


def test_2_two_stores_sharing_a_jobs_directory_never_share_a_job_id_or_directory(session: UserSession) -> None:
    """A second login node's daemon (or a moved state directory): its own store, the same jobs dir.
    Job ids are claimed in the shared jobs directory, so the second store's first job is not 1."""
    (session.root / "state-other").mkdir()
    chown_to(session, session.root / "state-other")
    other = UserSession(session.user, session.root, {**session.env, "HPCSCHED_STATE_DIR": str(session.root / "state-other")})
    session.write("hello.py", "import sys\nprint('OUTPUT of', sys.argv[1], flush=True)\n")
    try:
        mine = session.run_job("hello.py", "--nodes", "1", "--", "store-one")
        theirs = other.run_job("hello.py", "--nodes", "1", "--", "store-two")
        assert mine == 1 and theirs == 2
        assert session.wait(mine)["state"] == "COMPLETED" and other.wait(theirs)["state"] == "COMPLETED"
        assert session.status(mine)["job_dir"] != other.status(theirs)["job_dir"]
        my_log, their_log = session.logs(mine), other.logs(theirs)
        assert "OUTPUT of store-one" in my_log and "store-two" not in my_log
        assert "OUTPUT of store-two" in their_log and "store-one" not in their_log
    finally:
        other.hs("daemon", "stop", check=False, timeout=60)


def test_7_a_symlink_out_of_the_work_directory_is_refused_at_submit(session: UserSession) -> None:
    session.write("train.py", "print('hi')\n")
    (session.workdir / "data").mkdir()
    link = session.workdir / "data" / "imagenet"
    link.symlink_to("/etc")
    chown_to(session, session.workdir / "data", link)
    out = session.hs("run", "train.py", "--nodes", "1", check=False)
    assert out.returncode == 2
    assert f"{link} is a symbolic link to /etc, outside the work directory {session.workdir}" in out.stderr
    assert "copy the data into the work directory" in out.stderr
    assert not os.listdir(session.root / "jobs")
