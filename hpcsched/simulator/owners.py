"""Who owns each job of a workload, and which jobs are plain (rigid) Slurm jobs.

The Pollux workloads and the Philly window name no users. :func:`assign_owners` makes a stated,
seeded assignment: each job's user is drawn uniformly from ``user1 .. userU``, and a seeded
random ``rigid_share`` of the jobs (rounded to a whole number of jobs) is rigid. The same seed
gives the same assignment, so a mixed run and its all-rigid baseline (:func:`all_rigid`) share
their users.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from hpcsched.errors import ValidationError

from .workload import JobSpec


def user_name(index: int) -> str:
    return f"user{index + 1}"


def assign_owners(workload: Sequence[JobSpec], users: int, rigid_share: float, seed: int) -> list[JobSpec]:
    """The workload with ``user`` and ``rigid`` set (module docstring)."""
    if users < 1:
        raise ValidationError("--users", f"must be at least 1, got {users}")
    if not 0.0 <= rigid_share <= 1.0:
        raise ValidationError("--rigid-share", f"must be within 0..1, got {rigid_share}")
    rng = np.random.default_rng(seed)
    owners = rng.integers(users, size=len(workload))
    rigid = set(rng.permutation(len(workload))[: round(rigid_share * len(workload))].tolist())
    return [
        dataclasses.replace(spec, user=user_name(int(owner)), rigid=index in rigid)
        for index, (spec, owner) in enumerate(zip(workload, owners, strict=True))
    ]


def all_rigid(workload: Sequence[JobSpec]) -> list[JobSpec]:
    """The same jobs and users, every job a plain Slurm job (the baseline nobody may be worse off than)."""
    return [dataclasses.replace(spec, rigid=True) for spec in workload]


def all_elastic(workload: Sequence[JobSpec]) -> list[JobSpec]:
    """The same jobs and users, every job elastic (the reference of what the rigid jobs cost)."""
    return [dataclasses.replace(spec, rigid=False) for spec in workload]


def of_user(workload: Sequence[JobSpec], user: str) -> list[JobSpec]:
    return [spec for spec in workload if spec.user == user]
