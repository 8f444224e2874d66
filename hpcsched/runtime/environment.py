"""What the launcher tells a training process through its environment.

hpcsched's per-node launcher sets HPCSCHED_JOB_ID, HPCSCHED_ATTEMPT, HPCSCHED_JOB_DIR, the job's
identity (HPCSCHED_STORE_ID, HPCSCHED_JOB_NONCE: which daemon store and which submission) and
optionally HPCSCHED_CHECKPOINT_DIR; torchrun sets RANK, LOCAL_RANK, WORLD_SIZE and
LOCAL_WORLD_SIZE. Everything here also works without either of them (``python train.py``), so a
script written for hpcsched still runs on a laptop: checkpoints then go to ./checkpoints and
progress goes nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STOP_FILE_NAME = "stop-request"
PROGRESS_FILE_NAME = "progress.jsonl"


@dataclass(frozen=True)
class Topology:
    """This process's place among the ranks; ``launched`` is true under torchrun (RANK is set)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    launched: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class JobIdentity:
    """Which job this is, across stores and submissions: the daemon store's id, the job's id in it,
    and the random nonce of this submission. Written into every checkpoint's manifest, so that a
    job resumes only from checkpoints it wrote itself (D4)."""

    store_id: str
    job_id: str
    nonce: str

    def as_dict(self) -> dict[str, str]:
        return {"store_id": self.store_id, "job_id": self.job_id, "nonce": self.nonce}


@dataclass(frozen=True)
class JobEnvironment:
    """Where this attempt of the job keeps its files; ``job_dir`` is None outside hpcsched.
    ``identity`` is None outside hpcsched and for jobs submitted by versions without one.
    ``checkpointed_exit`` is the exit status of a rank that stopped at a checkpoint: 75 (requeue
    me), or 0 where hpcsched's launcher reads the checkpointed marker instead
    (HPCSCHED_CHECKPOINTED_EXIT=0), so that torchrun sees no failed worker and prints no
    ChildFailedError for an intended stop."""

    job_id: str | None
    attempt: int
    job_dir: Path | None
    checkpoint_dir: Path
    identity: JobIdentity | None = None
    checkpointed_exit: int = 75

    @property
    def stop_file(self) -> Path | None:
        return self.job_dir / STOP_FILE_NAME if self.job_dir else None

    @property
    def progress_file(self) -> Path | None:
        return self.job_dir / PROGRESS_FILE_NAME if self.job_dir else None

    @property
    def checkpointed_marker(self) -> Path | None:
        """The file rank 0 writes after an agreed stop saved a checkpoint (read by the driver)."""
        return self.job_dir / "attempts" / str(self.attempt) / "checkpointed" if self.job_dir else None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def topology_from_env(env: Mapping[str, str] | None = None) -> Topology:
    """Read torchrun's variables; a process without RANK is rank 0 of a world of one."""
    env = os.environ if env is None else env
    if "RANK" not in env:
        return Topology()
    topology = Topology(
        rank=_int(env, "RANK", 0),
        local_rank=_int(env, "LOCAL_RANK", 0),
        world_size=_int(env, "WORLD_SIZE", 1),
        local_world_size=_int(env, "LOCAL_WORLD_SIZE", 1),
        launched=True,
    )
    if not 0 <= topology.rank < topology.world_size:
        raise ValueError(f"RANK={topology.rank} is outside WORLD_SIZE={topology.world_size}")
    return topology


def job_from_env(env: Mapping[str, str] | None = None) -> JobEnvironment:
    """Read hpcsched's variables (HPCSCHED_ATTEMPT is 1-based; it defaults to 1)."""
    env = os.environ if env is None else env
    job_dir = Path(env["HPCSCHED_JOB_DIR"]) if env.get("HPCSCHED_JOB_DIR") else None
    if env.get("HPCSCHED_CHECKPOINT_DIR"):
        checkpoint_dir = Path(env["HPCSCHED_CHECKPOINT_DIR"])
    elif job_dir is not None:
        checkpoint_dir = job_dir / "checkpoints"
    else:
        checkpoint_dir = Path("checkpoints")
    attempt = _int(env, "HPCSCHED_ATTEMPT", 1)
    if attempt < 1:
        raise ValueError(f"HPCSCHED_ATTEMPT={attempt} must be 1 or more")
    return JobEnvironment(env.get("HPCSCHED_JOB_ID") or None, attempt, job_dir, checkpoint_dir, identity_from_env(env),
                          _int(env, "HPCSCHED_CHECKPOINTED_EXIT", 75))


def identity_from_env(env: Mapping[str, str]) -> JobIdentity | None:
    """The job's identity, or None unless the launcher set all three parts."""
    parts = [env.get(name, "").strip() for name in ("HPCSCHED_STORE_ID", "HPCSCHED_JOB_ID", "HPCSCHED_JOB_NONCE")]
    return JobIdentity(*parts) if all(parts) else None
