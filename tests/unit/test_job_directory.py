"""A job's directory belongs to exactly one job (reliability item 2, D4, G5): named after its store,
created by the daemon itself, refused when something was there before submission, never reached
through another user's link; and the job's identity reaches the container."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from fakeslurm import Core

from hpcsched.daemon.submission import BatchScriptError
from hpcsched.jobs import layout
from hpcsched.jobs.layout import JobDirectoryRefused
from hpcsched.jobs.model import JobState
from hpcsched.launcher.__main__ import parse_args
from hpcsched.launcher.container import NodeContext, podman_run_argv

IDENTITY = {"store_id": "s1", "job_id": "1", "nonce": "n1"}
OTHER_UID = 54321


@pytest.fixture
def d(tmp_path: Path) -> Core:
    return Core(tmp_path)


def test_D4_a_job_directory_there_before_submission_is_refused_and_left_alone(d: Core) -> None:
    job_id = d.accept()
    job = d.store.get_job(job_id)
    assert job is not None
    stale = Path(job.job_dir) / "checkpoints" / "step-0000000500"
    stale.mkdir(parents=True)
    (stale / "manifest.json").write_text("{}")
    with pytest.raises(BatchScriptError, match="exists before submission"):
        d.submitter.submit(job_id)
    failed = d.store.get_job(job_id)
    assert failed is not None and failed.state is JobState.FAILED and failed.current is not None
    assert f"the job directory {job.job_dir} exists before submission" in failed.current.state_reason
    assert len(d.slurm.called("sbatch")) == 0
    assert sorted(p.name for p in Path(job.job_dir).rglob("*")) == ["checkpoints", "manifest.json", "step-0000000500"]


def test_a_submitted_job_directory_is_private_and_names_its_job(d: Core) -> None:
    job = d.submitter.submit(d.accept())
    assert job.state is JobState.PENDING
    directory = Path(job.job_dir)
    assert directory.parent == d.root / "jobs" and directory.name == f"{d.store.store_id}-{job.id}"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert json.loads((directory / "job.json").read_text()) == {
        "store_id": d.store.store_id, "job_id": str(job.id), "nonce": job.nonce}


def test_the_batch_script_passes_the_job_identity_to_the_launcher(d: Core) -> None:
    job = d.submitter.submit(d.accept())
    script = (Path(job.job_dir) / "batch.sh").read_text()
    assert f"--store-id {d.store.store_id} --job-nonce {job.nonce}" in script


def test_the_container_gets_the_identity_the_launcher_was_given() -> None:
    spec = parse_args(["--job-id", "3", "--job-dir", "/j/s-3", "--store-id", "s", "--job-nonce", "n",
                       "--image", "img", "--workdir", "/w", "/w/train.py"])
    ctx = NodeContext(slurm_job_id=9, node_rank=0, num_nodes=1, master_addr="n1", node_name="n1", restart_count=0,
                      attempt=1, node_list="n1", gpus=(), master_port=1234, cpus_per_node=2)
    argv = podman_run_argv(spec, ctx, [])
    env = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert {"HPCSCHED_STORE_ID=s", "HPCSCHED_JOB_ID=3", "HPCSCHED_JOB_NONCE=n"} <= set(env)


def test_a_submission_cut_short_takes_up_its_own_directory_again(tmp_path: Path) -> None:
    job_dir = str(tmp_path / "jobs" / "s1-1")
    layout.create_job_dir(job_dir, IDENTITY)
    (Path(job_dir) / "batch.sh").write_text("#!/bin/bash\n")
    layout.create_job_dir(job_dir, IDENTITY)  # the daemon restarted before sbatch
    with pytest.raises(JobDirectoryRefused, match="exists before submission"):
        layout.create_job_dir(job_dir, {**IDENTITY, "nonce": "another submission"})


def test_an_empty_directory_of_ours_is_taken_up(tmp_path: Path) -> None:
    """The daemon stopped between mkdir and writing job.json: nothing foreign can be in it."""
    job_dir = tmp_path / "s1-1"
    job_dir.mkdir()
    layout.create_job_dir(str(job_dir), IDENTITY)
    assert layout.read_json(layout.identity_file(str(job_dir))) == IDENTITY


def test_an_empty_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    job_dir = tmp_path / "s1-1"
    job_dir.mkdir()
    os.chown(job_dir, OTHER_UID, OTHER_UID)
    with pytest.raises(JobDirectoryRefused, match="exists before submission"):
        layout.create_job_dir(str(job_dir), IDENTITY)


def test_a_link_where_the_job_directory_goes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "s1-1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(JobDirectoryRefused, match="exists before submission"):
        layout.create_job_dir(str(tmp_path / "s1-1"), IDENTITY)
    assert not list((tmp_path / "elsewhere").iterdir())


def test_G5_a_jobs_directory_reached_through_another_users_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "theirs"
    target.mkdir()
    link = tmp_path / "jobs"
    link.symlink_to(target)
    os.lchown(link, OTHER_UID, OTHER_UID)
    with pytest.raises(JobDirectoryRefused, match=f"{link} is a symbolic link .* owned by"):
        layout.create_job_dir(str(link / "s1-1"), IDENTITY)
    assert not (target / "s1-1").exists()


def test_a_jobs_directory_reached_through_a_link_of_ours_is_fine(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "jobs").symlink_to(tmp_path / "data")
    layout.create_job_dir(str(tmp_path / "jobs" / "s1-1"), IDENTITY)
    assert (tmp_path / "data" / "s1-1" / "job.json").exists()
