"""What the runtime reads from the environment set by torchrun and hpcsched's launcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcsched.runtime.environment import Topology, job_from_env, topology_from_env


def test_under_hpcsched() -> None:
    job = job_from_env({"HPCSCHED_JOB_DIR": "/shared/jobs/7", "HPCSCHED_ATTEMPT": "3", "HPCSCHED_JOB_ID": "7"})
    assert (job.job_id, job.attempt, job.job_dir) == ("7", 3, Path("/shared/jobs/7"))
    assert job.checkpoint_dir == Path("/shared/jobs/7/checkpoints")
    assert job.stop_file == Path("/shared/jobs/7/stop-request")
    assert job.progress_file == Path("/shared/jobs/7/progress.jsonl")
    assert job.checkpointed_marker == Path("/shared/jobs/7/attempts/3/checkpointed")


def test_checkpoint_dir_can_be_set() -> None:
    job = job_from_env({"HPCSCHED_JOB_DIR": "/j", "HPCSCHED_CHECKPOINT_DIR": "/scratch/ckpt"})
    assert job.checkpoint_dir == Path("/scratch/ckpt") and job.attempt == 1


def test_outside_hpcsched() -> None:
    job = job_from_env({})
    assert job.job_dir is None and job.checkpoint_dir == Path("checkpoints")
    assert job.stop_file is None and job.progress_file is None and job.checkpointed_marker is None


def test_topology() -> None:
    assert topology_from_env({}) == Topology(0, 0, 1, 1, launched=False)
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}
    assert topology_from_env(env) == Topology(3, 1, 4, 2, launched=True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "outside WORLD_SIZE=2"),
    ],
)
def test_bad_topology(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        topology_from_env(env)


def test_bad_attempt() -> None:
    with pytest.raises(ValueError, match="HPCSCHED_ATTEMPT=0"):
        job_from_env({"HPCSCHED_ATTEMPT": "0"})
