"""Reading what the job itself reports on the shared file system: the batch driver's attempt
records (``attempts/<n>/info.json``, ``end.json``) and the runtime library's ``progress.jsonl``.

The daemon never executes or unpickles anything it reads here: JSON only (G6).
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from hpcsched.daemon.store import Store
from hpcsched.jobs import layout
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.jobs.progress import parse_lines, summarize

log = logging.getLogger(__name__)
MAX_READ = 4 * 1024 * 1024
RECENT = 200

OUTCOME_STATES = {
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "resize": JobState.STOPPED,
    "requeue": JobState.STOPPED,
    "timeout": JobState.STOPPED,
    "superseded": JobState.STOPPED,
}
REASONS = {r.value: r for r in AttemptReason}


def attempt_changes(attempt: Attempt, info: dict[str, Any] | None, end: dict[str, Any] | None,
                    newest: bool) -> dict[str, Any]:
    """Fields of an attempt the driver's records add or correct (pure)."""
    changes: dict[str, Any] = {}
    if info:
        if attempt.start_time is None and isinstance(info.get("start_time"), (int, float)):
            changes["start_time"] = float(info["start_time"])
        if info.get("node_list") and attempt.node_list != info["node_list"]:
            changes["node_list"] = str(info["node_list"])
        if isinstance(info.get("nodes"), int) and info["nodes"] and attempt.nodes != info["nodes"]:
            changes["nodes"] = info["nodes"]
    if end:
        state = OUTCOME_STATES.get(str(end.get("outcome")))
        # The newest attempt's final state comes from Slurm; earlier ones end where the driver says.
        if state is not None and (not newest or state is JobState.STOPPED) and attempt.state is not state:
            changes["state"] = state
        if attempt.end_time is None and isinstance(end.get("end_time"), (int, float)):
            changes["end_time"] = float(end["end_time"])
        if attempt.exit_code is None and isinstance(end.get("exit_code"), int):
            changes["exit_code"] = end["exit_code"]
    return changes


class JobFiles:
    """Ingests attempt records and progress for the daemon's monitor."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.recent: dict[int, collections.deque[dict[str, Any]]] = {}

    def records(self, job_id: int) -> list[dict[str, Any]]:
        """The job's recent progress lines (what the last cycles read)."""
        return list(self.recent.get(job_id, ()))

    def ingest(self, job: Job, now: float) -> None:
        self._attempts(job, now)
        self._progress(job)

    def _attempts(self, job: Job, now: float) -> None:
        known = {a.number: a for a in job.attempts}
        newest = max(known) if known else 0
        for n in layout.existing_attempts(job.job_dir):
            info = layout.read_json(layout.attempt_dir(job.job_dir, n) / "info.json")
            end = layout.read_json(layout.attempt_dir(job.job_dir, n) / "end.json")
            if n not in known:
                if info is None:
                    continue
                reason = REASONS.get(str(info.get("reason")), AttemptReason.REQUEUE)
                self.store.add_attempt(job.id, n, now, reason=reason, state=JobState.RUNNING,
                                       nodes=int(info.get("nodes") or 0), slurm_job_id=info.get("slurm_job_id"),
                                       restart_count=job.current.restart_count if job.current else 0,
                                       log_path=str(layout.log_path(job.job_dir, n)))
                job = self.store.get_job(job.id) or job
                known = {a.number: a for a in job.attempts}
                newest = max(known)
            changes = attempt_changes(known[n], info, end, newest=n == newest)
            if changes:
                self.store.update_attempt(job.id, n, now, **changes)

    def _progress(self, job: Job) -> None:
        path = layout.progress_file(job.job_dir)
        offset = self.store.progress_offset(job.id) if job.id in self.recent else 0
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(MAX_READ)
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next cycle
        if not complete and job.id in self.recent:
            return
        recent = self.recent.setdefault(job.id, collections.deque(maxlen=RECENT))
        recent.extend(parse_lines(complete.decode("utf-8", errors="replace")))
        summary = summarize(recent)
        if summary is not None and job.progress and job.progress.get("elastic"):
            summary["elastic"] = True  # the start line may have scrolled out of the window
        self.store.set_progress(job.id, summary, offset + len(complete))
