"""Job and attempt records and the explicit job state enum.

A job is what the user submitted; an attempt is one run of it on Slurm (the first submission, and
later every requeue or resize). The job's state is the state of its newest attempt, except for
``SUBMITTING``: the intent is committed but Slurm has not accepted it yet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from hpcsched.planning.fields import format_count


class JobState(str, enum.Enum):
    SUBMITTING = "SUBMITTING"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    STOPPED = "STOPPED"  # an attempt that stopped at a checkpoint; the job goes on in the next one
    UNKNOWN = "UNKNOWN"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.OUT_OF_MEMORY,
    }
)


class AttemptReason(str, enum.Enum):
    """Why an attempt exists."""

    SUBMIT = "submit"
    RESIZE = "resize"
    PREEMPTION = "preemption"
    NODE_FAILURE = "node_failure"
    TIMEOUT = "timeout"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Attempt:
    job_id: int
    number: int
    reason: AttemptReason
    state: JobState
    nodes: int
    slurm_job_id: int | None = None
    node_list: str = ""
    state_reason: str = ""
    exit_code: int | None = None
    submit_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    log_path: str = ""
    restart_count: int = 0

    def elapsed(self, now: float) -> float | None:
        """Seconds run so far (or in all, once ended); None before the start."""
        if self.start_time is None:
            return None
        end = self.end_time if self.end_time is not None else now
        return max(0.0, end - self.start_time)

    @property
    def shown_exit_code(self) -> int | None:
        """The exit code ``status`` shows: none for a cancelled attempt, for which Slurm (and a
        driver that stopped cleanly) may record 0, which reads as success."""
        return None if self.state is JobState.CANCELLED else self.exit_code


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    user: str
    uid: int
    state: JobState
    request: dict[str, Any]
    created: float
    job_dir: str
    cancel_requested: bool = False
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)
    progress: dict[str, Any] | None = None
    nonce: str = ""  # random per submission; "" for jobs recorded by versions without one

    @property
    def elastic(self) -> bool:
        """Submitted with a node range and seen using the runtime library: may be resized."""
        nodes = str(self.request.get("nodes", ""))
        uses_runtime = bool(self.progress and self.progress.get("elastic"))
        return "-" in nodes and uses_runtime

    def counts(self) -> dict[str, int]:
        """Attempts by reason: how often the job was resized, preempted, timed out or lost a node."""
        out = {"resizes": 0, "preemptions": 0, "timeouts": 0, "failures": 0, "requeues": 0}
        key = {AttemptReason.RESIZE: "resizes", AttemptReason.PREEMPTION: "preemptions",
               AttemptReason.TIMEOUT: "timeouts", AttemptReason.NODE_FAILURE: "failures",
               AttemptReason.REQUEUE: "requeues"}
        for a in self.attempts:
            if a.reason in key:
                out[key[a.reason]] += 1
        return out

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def shown(self) -> tuple[JobState, Attempt | None, str]:
        """The state, attempt and reason to show. While a grown allocation waits in the queue,
        the job still trains on its previous one: show that one as running."""
        cur = self.current
        if cur is None:
            return self.state, None, ""
        if (len(self.attempts) > 1 and cur.reason is AttemptReason.RESIZE
                and cur.state in (JobState.SUBMITTING, JobState.PENDING)):
            previous = self.attempts[-2]
            if previous.state is JobState.RUNNING and previous.slurm_job_id != cur.slurm_job_id:
                growing = f"growing to {format_count(cur.nodes, 'node')} (Slurm job {cur.slurm_job_id} pending)"
                return JobState.RUNNING, previous, growing
        return self.state, cur, cur.state_reason

    def as_dict(self, now: float) -> dict[str, Any]:
        """The JSON form shown by ``hpcsched status --json``."""
        state, cur, reason = self.shown()
        return {
            "id": self.id,
            "name": self.name,
            "user": self.user,
            "state": state.value,
            "nodes": cur.nodes if cur else None,
            "node_list": cur.node_list if cur else "",
            "slurm_job_id": cur.slurm_job_id if cur else None,
            "elapsed": cur.elapsed(now) if cur else None,
            "exit_code": None if cur is None or state is JobState.CANCELLED else cur.shown_exit_code,
            "reason": reason,
            "attempts": [
                {
                    "number": a.number,
                    "reason": a.reason.value,
                    "state": a.state.value,
                    "nodes": a.nodes,
                    "slurm_job_id": a.slurm_job_id,
                    "node_list": a.node_list,
                    "exit_code": a.shown_exit_code,
                    "submit_time": a.submit_time,
                    "start_time": a.start_time,
                    "end_time": a.end_time,
                    "log_path": a.log_path,
                    "elapsed": a.elapsed(now),
                }
                for a in self.attempts
            ],
            "created": self.created,
            "job_dir": self.job_dir,
            "elastic": self.elastic,
            "progress": self.progress,
            "counts": self.counts(),
            "request": self.request,
        }
