"""What the daemon does when Slurm runs a job again (requeue): a new attempt with its reason.

The reason comes from the driver's record of how the previous attempt ended (time limit near →
timeout; hpcsched asked → resize; ranks hung → node failure) or, when the previous attempt ended without one (its node
died, or Slurm preempted it), from sacct's state of the previous run. Node failures are counted
and limited; preemptions and timeouts are not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hpcsched.daemon.store import Store
from hpcsched.jobs import layout
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord
from hpcsched.slurm.runner import SlurmCommandError

log = logging.getLogger(__name__)
DEFAULT_MAX_FAILURES = 3

SLURM_END_REASONS = {
    JobState.NODE_FAIL: AttemptReason.NODE_FAILURE,
    JobState.PREEMPTED: AttemptReason.PREEMPTION,
    JobState.TIMEOUT: AttemptReason.TIMEOUT,
}


def reason_from_outcome(outcome: str | None) -> AttemptReason | None:
    return {"timeout": AttemptReason.TIMEOUT, "requeue": AttemptReason.RESIZE,
            "hung": AttemptReason.NODE_FAILURE}.get(outcome or "")


def reason_from_runs(runs: list[SlurmJobRecord], restart_count: int) -> AttemptReason:
    """The state of the run before the current one. The current run may not have started yet:
    sacct prints no start for it from 23.02 (22.05 prints its expected start), so runs without one
    sort last, after every run that started."""
    ordered = sorted(runs, key=lambda r: (r.start_time is None, r.start_time or 0, r.submit_time or 0))
    earlier = ordered[:-1] if len(ordered) > 1 else ordered
    previous = earlier[-1] if earlier else None
    if previous is None:
        return AttemptReason.REQUEUE
    by_state = SLURM_END_REASONS.get(previous.state)
    if by_state is not None:
        return by_state
    if previous.slurm_state.upper().startswith("NODE_FAIL"):
        return AttemptReason.NODE_FAILURE
    return AttemptReason.REQUEUE


class RequeueTracker:
    def __init__(self, store: Store, client: SlurmClient, clock: Callable[[], float]) -> None:
        self.store = store
        self.client = client
        self.clock = clock

    def on_requeue(self, job: Job, attempt: Attempt, record: SlurmJobRecord) -> None:
        now = self.clock()
        end = layout.read_json(layout.attempt_dir(job.job_dir, attempt.number) / "end.json")
        reason = reason_from_outcome(str(end.get("outcome")) if end else None)
        if reason is None:
            try:
                runs = self.client.accounting(since=job.created - 60, job_ids=[record.job_id])
                reason = reason_from_runs([r for r in runs if r.job_id == record.job_id], record.restart_count)
            except SlurmCommandError as e:
                log.warning("sacct failed while classifying the requeue of job %s: %s", job.id, e)
                reason = AttemptReason.REQUEUE
        if not attempt.state.is_final and attempt.state is not JobState.STOPPED:
            self.store.update_attempt(job.id, attempt.number, now, state=JobState.STOPPED,
                                      end_time=attempt.end_time or now)
        target = self.store.pending_nodes(job.id)
        self.store.add_attempt(
            job.id, attempt.number + 1, now, reason=reason, state=JobState.PENDING,
            nodes=target or attempt.nodes, slurm_job_id=record.job_id, restart_count=record.restart_count,
            log_path=str(layout.log_path(job.job_dir, attempt.number + 1)),
        )
        if target is not None:
            self.store.set_pending_nodes(job.id, None)
            try:
                self.client.update_nodes(record.job_id, target)
            except SlurmCommandError as e:
                self.store.record_event(job.id, now, "resize_failed", str(e))
        self._limit_failures(job.id, record.job_id)

    def _limit_failures(self, job_id: int, slurm_job_id: int) -> None:
        job = self.store.get_job(job_id)
        if job is None:
            return
        limit = int(job.request.get("max_failures") or DEFAULT_MAX_FAILURES)
        failures = job.counts()["failures"]
        if failures > limit:
            log.warning("job %s lost a node %d times (limit %d): cancelling", job_id, failures, limit)
            self.store.record_event(job_id, self.clock(), "failure_limit", f"{failures} node failures > {limit}")
            self.store.request_cancel(job_id, self.clock())
            self.client.cancel(slurm_job_id)
