"""The monitor: one batched poll of Slurm per cycle for all open jobs, applied to the store.

One ``squeue --json`` per cycle, plus one ``sacct --json`` for the jobs squeue no longer shows —
a bounded number of Slurm calls whatever the number of jobs (H3). When Slurm does not answer, the
states stay as they are and the next cycle waits longer (B4).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hpcsched.daemon import reconcile
from hpcsched.daemon.ingest import JobFiles
from hpcsched.daemon.rebalance_plan import waiting
from hpcsched.daemon.requeue import RequeueTracker
from hpcsched.daemon.resize import Handovers, resend_pending_requests
from hpcsched.daemon.store import Store
from hpcsched.daemon.submission import Submitter
from hpcsched.jobs.model import JobState
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmParseError
from hpcsched.slurm.runner import SlurmCommandError

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0


class Monitor:
    def __init__(self, store: Store, client: SlurmClient, submitter: Submitter, interval: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.client = client
        self.submitter = submitter
        self.interval = interval
        self.clock = clock
        self.failures = 0
        self.recovered = False
        self.files = JobFiles(store)
        self.requeues = RequeueTracker(store, client, clock)
        self.handovers = Handovers(store, client, clock)
        self.wakeup = threading.Event()
        # Set by the service: the admission pass, run once for each newly waiting attempt.
        self.on_waiting: Callable[[], None] | None = None
        self.admission_seen: set[tuple[int, int]] = set()

    def poll_once(self) -> int:
        """One cycle; returns the number of attempts updated. Raises nothing Slurm-related."""
        try:
            if not self.recovered:
                self.submitter.recover()
                resend_pending_requests(self.store, self.client)
                self.recovered = True
            self._submit_leftovers()
            updated = self._poll()
            self.failures = 0
            self._admit()
            return updated
        except (SlurmCommandError, SlurmParseError) as e:
            self.failures += 1
            log.warning("Slurm poll failed (%d in a row), states kept: %s", self.failures, e)
            return 0

    def next_delay(self) -> float:
        return float(min(MAX_BACKOFF, self.interval * (2 ** min(self.failures, 6))))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()
            self.wakeup.wait(self.next_delay())
            self.wakeup.clear()

    def _admit(self) -> None:
        """Run the admission pass when a job of ours has started waiting for nodes since the last
        cycle (each waiting attempt once: a job that cannot be admitted now waits for cron)."""
        if self.on_waiting is None:
            return
        fresh = {(j.id, j.current.number) for j in self.store.open_jobs() if j.current is not None and waiting(j)}
        new, self.admission_seen = fresh - self.admission_seen, fresh
        if new:
            self.on_waiting()

    def _submit_leftovers(self) -> None:
        for job in self.store.open_jobs():
            cur = job.current
            if cur is not None and cur.state is JobState.SUBMITTING and cur.slurm_job_id is None:
                try:
                    self.submitter.submit(job.id)
                except SlurmCommandError as e:
                    if e.timed_out:
                        self.recovered = False  # look it up by tag next cycle
                    log.error("submitting job %s failed: %s", job.id, e)

    def _poll(self) -> int:
        jobs = self.store.open_jobs()
        now = self.clock()
        for job in jobs:
            if job.job_dir and job.current is not None and job.current.slurm_job_id is not None:
                self.files.ingest(job, now)
        jobs = self.store.open_jobs()
        attempts = reconcile.tracked_attempts(jobs)
        if not attempts:
            return 0
        queue = {r.job_id: r for r in self.client.queue()}
        by_id = {j.id: j for j in jobs}
        for a in attempts:
            record = queue.get(a.slurm_job_id or -1)
            if record is not None and reconcile.requeued_since(a, record):
                self.requeues.on_requeue(by_id[a.job_id], a, record)
        attempts = reconcile.tracked_attempts(self.store.open_jobs())
        missing = reconcile.missing_from_queue(attempts, queue)
        accounting = None
        if missing:
            since = min((a.submit_time or self.clock()) for a in attempts if a.slurm_job_id in missing) - 300
            try:
                accounting = reconcile.latest_runs(self.client.accounting(since=since, job_ids=missing))
            except (SlurmCommandError, SlurmParseError) as e:
                log.warning("sacct failed, jobs missing from squeue keep their state: %s", e)
        self.handovers.check(self.store.open_jobs(), queue)
        updates = reconcile.reconcile(attempts, queue, accounting)
        now = self.clock()
        for u in updates:
            self.store.update_attempt(u.job_id, u.number, now, **u.changes)
        return len(updates)
