"""Slurm job states mapped to hpcsched's :class:`JobState` through one explicit table.

A state string not in the table maps to UNKNOWN, never to a final state: "unknown is not done".
"""

from __future__ import annotations

from hpcsched.jobs.model import JobState

SLURM_STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "DEADLINE": JobState.TIMEOUT,
    "TIMEOUT": JobState.TIMEOUT,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
}


def to_job_state(slurm_state: str) -> JobState:
    """Map one Slurm state (e.g. ``"CANCELLED by 1001"`` or ``["RUNNING"]`` joined) to JobState."""
    word = slurm_state.strip().split(" ", 1)[0].upper() if slurm_state else ""
    return SLURM_STATES.get(word, JobState.UNKNOWN)
