"""Pure reconciliation of hpcsched's attempts with what Slurm reports.

Rules (invariant 2, "unknown is not done"): a job in ``squeue`` takes the state squeue shows; a
job missing from squeue takes its state from ``sacct``; a job in neither becomes UNKNOWN and is
looked up again on the next cycle — it is never taken for finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.slurm.parse import SlurmJobRecord


@dataclass(frozen=True)
class AttemptUpdate:
    job_id: int
    number: int
    changes: Mapping[str, Any]


def tracked_attempts(jobs: Iterable[Job]) -> list[Attempt]:
    """The newest attempt of each open job that Slurm knows by id."""
    out = []
    for job in jobs:
        cur = job.current
        if cur is not None and cur.slurm_job_id is not None and not cur.state.is_final:
            out.append(cur)
    return out


def requeued_since(attempt: Attempt, record: SlurmJobRecord) -> bool:
    """Slurm ran the job again (requeue) since this attempt began."""
    return record.restart_count > attempt.restart_count


def missing_from_queue(attempts: Sequence[Attempt], queue: Mapping[int, SlurmJobRecord]) -> list[int]:
    return sorted({a.slurm_job_id for a in attempts if a.slurm_job_id is not None and a.slurm_job_id not in queue})


def latest_runs(records: Iterable[SlurmJobRecord]) -> dict[int, SlurmJobRecord]:
    """sacct -D lists every run of a requeued job; keep the newest run of each job id."""
    newest: dict[int, SlurmJobRecord] = {}
    for r in records:
        prev = newest.get(r.job_id)
        if prev is None or (r.submit_time or 0, r.start_time or 0) >= (prev.submit_time or 0, prev.start_time or 0):
            newest[r.job_id] = r
    return newest


def changes_from_record(attempt: Attempt, record: SlurmJobRecord) -> dict[str, Any]:
    """The attempt fields that differ from what Slurm reports."""
    wanted: dict[str, Any] = {
        "state": record.state,
        "state_reason": "" if record.reason in ("None", "") else record.reason,
        "submit_time": record.submit_time or attempt.submit_time,
        "start_time": record.start_time or attempt.start_time,
        "end_time": record.end_time,
        "exit_code": record.exit_code,
    }
    if record.node_list:
        wanted["node_list"] = record.node_list
    if record.node_count and record.state is not JobState.PENDING:
        wanted["nodes"] = record.node_count
    return {k: v for k, v in wanted.items() if getattr(attempt, k) != v}


def reconcile(
    attempts: Sequence[Attempt],
    queue: Mapping[int, SlurmJobRecord],
    accounting: Mapping[int, SlurmJobRecord] | None,
) -> list[AttemptUpdate]:
    """Updates for each tracked attempt. ``accounting`` is None when sacct could not be asked:
    then jobs missing from the queue keep their state until it can."""
    updates = []
    for a in attempts:
        assert a.slurm_job_id is not None
        record = queue.get(a.slurm_job_id)
        if record is None and accounting is not None:
            record = accounting.get(a.slurm_job_id)
        if record is not None:
            changes = changes_from_record(a, record)
        elif accounting is not None and a.state is not JobState.UNKNOWN:
            changes = {"state": JobState.UNKNOWN, "state_reason": "not in squeue or sacct"}
        else:
            changes = {}
        if changes:
            updates.append(AttemptUpdate(a.job_id, a.number, changes))
    return updates


def withdrawn_grow(job: Job, update: AttemptUpdate, predecessor: SlurmJobRecord | None,
                   driver_started: bool) -> str | None:
    """Why ``update`` withdraws a grow of ``job`` instead of being applied, or None.

    A grown successor allocation that Slurm ended before its driver ever ran (cancelled while it
    waited: by its owner's ``scancel``, an administrator, a limit; or it failed to launch) never
    took over, and the job still trains in its previous allocation. Applying the successor's end
    would mark the whole job ended while it trains on unwatched; instead the grow is withdrawn and
    the job goes back to that attempt. Only while the previous allocation runs, and never when
    the job is being cancelled."""
    state = update.changes.get("state")
    if len(job.attempts) < 2 or job.cancel_requested or driver_started or not isinstance(state, JobState):
        return None
    cur, previous = job.attempts[-1], job.attempts[-2]
    if (update.number != cur.number or cur.reason is not AttemptReason.RESIZE or not state.is_final
            or cur.slurm_job_id is None or cur.slurm_job_id == previous.slurm_job_id):
        return None
    if predecessor is None or predecessor.job_id != previous.slurm_job_id or predecessor.state is not JobState.RUNNING:
        return None
    how = f"{state.value}, {update.changes['state_reason']}" if update.changes.get("state_reason") else state.value
    return (f"grow withdrawn: its allocation, Slurm job {cur.slurm_job_id}, ended before it started ({how}); "
            f"the job trains on in Slurm job {previous.slurm_job_id} on {previous.nodes} node(s)")


def completed_while_growing(job: Job) -> bool:
    """Whether the job finished its training in its old allocation (the driver's outcome
    ``completed``, exit 0) while the allocation of a grow still waits in the queue (pure). That
    allocation has nothing left to do: started, it would only find the job done."""
    if len(job.attempts) < 2 or job.cancel_requested:
        return False
    cur, previous = job.attempts[-1], job.attempts[-2]
    return (cur.reason is AttemptReason.RESIZE and cur.state is JobState.PENDING and cur.slurm_job_id is not None
            and cur.slurm_job_id != previous.slurm_job_id and previous.state is JobState.COMPLETED
            and previous.exit_code == 0)


def find_by_tag(records: Iterable[SlurmJobRecord], tag: str) -> SlurmJobRecord | None:
    """The Slurm job carrying hpcsched's tag in its comment (adoption after a crash)."""
    found = [r for r in records if r.comment == tag]
    return max(found, key=lambda r: r.job_id) if found else None


class TagVerdict(Enum):
    """What becomes of an attempt whose sbatch may have reached Slurm, once its tag is looked up."""

    ADOPT = "adopt"  # Slurm has a job with the tag: record its id
    SUBMIT = "submit"  # no sbatch failed (a restart) and Slurm has none: submit it now
    FAIL = "fail"  # sbatch failed and Slurm has none: the job failed with sbatch's error
    WITHDRAW = "withdraw"  # the same for a grown attempt: the job goes on as it was
    WAIT = "wait"  # Slurm could not be asked, or may still list it: stay SUBMITTING, look again next cycle


def settle_by_tag(
    found: SlurmJobRecord | None, looked_up: bool, sbatch_failed: bool, attempt: int, may_appear: bool = False
) -> TagVerdict:
    """The one rule for an sbatch whose outcome is not known (an error, a timeout, a restart):
    a job Slurm runs is never declared FAILED, and no second sbatch runs while it is unknown (A2, A3).
    ``may_appear``: the failed sbatch got no answer, so slurmctld may still queue the job; until
    that grace ends a job Slurm does not list yet is waited for, not failed."""
    if found is not None:
        return TagVerdict.ADOPT
    if not looked_up:
        return TagVerdict.WAIT
    if not sbatch_failed:
        return TagVerdict.SUBMIT
    if may_appear:
        return TagVerdict.WAIT
    return TagVerdict.FAIL if attempt == 1 else TagVerdict.WITHDRAW
