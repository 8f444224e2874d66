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


# Slurm's reasons for a pending job, in plain words (``hpcsched status`` shows both).
PENDING_REASONS: dict[str, str] = {
    "Resources": "waiting for free nodes",
    "Priority": "waiting behind jobs of higher priority",
    "PartitionNodeLimit": "asks for more nodes than the partition allows; it cannot start as asked",
    "PartitionConfig": "asks for more than the partition has (nodes, CPUs or GPUs); it cannot start as asked",
    "PartitionTimeLimit": "asks for more time than the partition allows; it cannot start as asked",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "its constraints cannot be met",
    "BeginTime": "waits for its earliest start time (--begin, or the hold after a requeue)",
    "Dependency": "waits for the jobs it depends on",
    "DependencyNeverSatisfied": "depends on a job that did not end as required; it will never start",
    "JobHeldUser": "held by you (scontrol release starts it)",
    "JobHeldAdmin": "held by an administrator",
    "Reservation": "waits for its reservation",
    "QOSMaxNodePerJobLimit": "asks for more nodes than its QOS allows; it cannot start as asked",
    "AssocMaxNodesPerJobLimit": "asks for more nodes than its account allows; it cannot start as asked",
}


def explain_reason(reason: str) -> str:
    """A Slurm reason with its meaning (``PartitionNodeLimit: asks for more nodes...``); any other
    text unchanged."""
    meaning = PENDING_REASONS.get(reason.strip())
    return f"{reason}: {meaning}" if meaning else reason
