"""The monitor: one batched poll of Slurm for all open jobs, applied to the store.

One ``squeue --json`` per poll, plus one ``sacct --json`` for the jobs squeue no longer shows —
a bounded number of Slurm calls whatever the number of jobs (H3).

Cadence: a cycle every ``interval`` seconds (5 by default) settles submissions and reads what the
jobs write (attempt records, progress: no Slurm call). Slurm is asked every interval while
something changes; while nothing does (no open job changes state, gains an attempt or reports its
end, none is being submitted, cancelled, grown or looked up) the wait before the next poll doubles
up to 12 intervals (60 s at the default). A request (``run``, ``cancel``) or a change seen in the
files brings it back at once. When Slurm does not answer, the states stay as they are and the wait
doubles up to 60 s (B4).

Isolation: an error in one job (an unreadable job directory, a batch script that cannot be
written, a bad record) is logged and counted and touches that job only; an error anywhere else
fails the cycle, which is logged with its traceback, counted and retried. Nothing stops the
thread; :meth:`Monitor.health` says when it is unhealthy (``hpcsched daemon status``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hpcsched.daemon import reconcile
from hpcsched.daemon.ingest import JobFiles
from hpcsched.daemon.rebalance_plan import waiting
from hpcsched.daemon.requeue import RequeueTracker
from hpcsched.daemon.resize import Handovers, resend_pending_requests, waiting_successor
from hpcsched.daemon.store import Store
from hpcsched.daemon.submission import Submitter
from hpcsched.jobs import layout
from hpcsched.jobs.model import Job, JobState
from hpcsched.slurm.client import SlurmClient, poll_delay
from hpcsched.slurm.parse import SlurmJobRecord, SlurmParseError
from hpcsched.slurm.runner import SlurmCommandError

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0
IDLE_INTERVALS = 12  # the wait while nothing changes grows to this many intervals (at most MAX_BACKOFF)
UNHEALTHY_FAILURES = 3  # failed cycles in a row that make the monitor unhealthy
STALLED_WAITS = 3  # ... or no successful cycle for this many of the longest waits


def next_delay(interval: float, failures: int, quiet_cycles: int) -> float:
    """Seconds until the next cycle: backs off on failures (B4) and while nothing changes (pure)."""
    if failures:
        return poll_delay(interval, MAX_BACKOFF, failures)
    return poll_delay(interval, max(interval, min(MAX_BACKOFF, interval * IDLE_INTERVALS)), quiet_cycles)


def activity(jobs: Iterable[Job]) -> tuple[frozenset[tuple[int, str, int, bool]], bool]:
    """What a cycle compares with the last poll to tell "nothing changed" (the open jobs, their
    states, attempts and reported ends), and whether a job is in a transition the monitor must
    follow closely (pure)."""
    seen = frozenset((j.id, j.state.value, len(j.attempts), j.current is not None and j.current.end_time is not None)
                     for j in jobs)
    busy = any(j.cancel_requested or waiting_successor(j) is not None
               or (j.current is not None and j.current.state in (JobState.SUBMITTING, JobState.UNKNOWN))
               for j in jobs)
    return seen, busy


@dataclass
class Health:
    """What ``hpcsched daemon status`` shows of the monitor."""

    started: float
    last_success: float | None = None
    failures: int = 0  # failed cycles in a row
    job_errors: int = 0  # errors kept to one job, since the start
    last_error: str = ""
    last_error_time: float | None = None
    running: bool = False

    def report(self, now: float, interval: float) -> dict[str, Any]:
        problems = []
        if not self.running:
            problems.append("the monitor thread is not running")
        if self.failures >= UNHEALTHY_FAILURES:
            problems.append(f"{self.failures} cycles in a row failed")
        silent = now - (self.last_success if self.last_success is not None else self.started)
        if silent > STALLED_WAITS * max(MAX_BACKOFF, interval):
            problems.append(f"no successful cycle for {silent:.0f} s")
        return {"healthy": not problems, "problems": problems, "last_cycle": self.last_success,
                "consecutive_failures": self.failures, "job_errors": self.job_errors,
                "last_error": self.last_error, "last_error_time": self.last_error_time}


class Monitor:
    def __init__(self, store: Store, client: SlurmClient, submitter: Submitter, interval: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.client = client
        self.submitter = submitter
        self.interval = interval
        self.clock = clock
        self.health = Health(started=clock())
        self.quiet = 0  # successful cycles in a row in which nothing changed
        self.recovered = False
        self.files = JobFiles(store)
        self.requeues = RequeueTracker(store, client, clock)
        self.handovers = Handovers(store, client, clock)
        self.wakeup = threading.Event()
        # Set by the service: the admission pass, run once for each newly waiting attempt.
        self.on_waiting: Callable[[], None] | None = None
        self.admission_seen: set[tuple[int, int]] = set()
        # Site mode: job states from the coordinator's poll, and the agent's report after each cycle.
        self.queue_source: Callable[[], list[SlurmJobRecord]] | None = None
        self.after_cycle: Callable[[], None] | None = None
        self._seen: frozenset[tuple[int, str, int, bool]] = frozenset()
        self.due = 0.0  # when Slurm is asked next
        self._sacct_error: SlurmCommandError | SlurmParseError | None = None

    def poll_once(self) -> int:
        """One cycle; returns the number of attempts Slurm's answer updated. Raises nothing: a
        failed cycle is logged, counted and retried after a longer wait."""
        try:
            return self._cycle()
        except (SlurmCommandError, SlurmParseError) as e:
            self._cycle_failed(f"Slurm did not answer: {e}")
            log.warning("Slurm poll failed (%d in a row), states kept: %s", self.health.failures, e)
        except Exception as e:  # the monitor must outlive any bug or file-system error
            self._cycle_failed(f"{type(e).__name__}: {e}")
            log.exception("monitor cycle failed (%d in a row)", self.health.failures)
        return 0

    def next_delay(self) -> float:
        return next_delay(self.interval, self.health.failures, self.quiet)

    def run(self, stop: threading.Event) -> None:
        self.health.running = True
        try:
            while not stop.is_set():
                self.poll_once()
                if self.wakeup.wait(self.interval):
                    self.quiet, self.due = 0, 0.0  # a request: ask Slurm now
                self.wakeup.clear()
        finally:
            self.health.running = False

    def _cycle(self) -> int:
        self._sacct_error = None
        for error in self.submitter.settle():
            self._job_error(error)
        if not self.recovered:
            resend_pending_requests(self.store, self.client)
            self.recovered = True
        self._ingest()
        if self.after_cycle is not None:
            with self._isolated(0):
                self.after_cycle()
        seen, _ = activity(self.store.open_jobs())
        changed, self._seen = seen != self._seen, seen
        if not changed and self.clock() < self.due:
            return 0
        updated = self._poll()
        self._admit()
        if self._sacct_error is not None:  # what squeue showed is applied; the wait still backs off (B4)
            raise self._sacct_error
        self.health.failures = 0
        self.health.last_success = self.clock()
        after, busy = activity(self.store.open_jobs())
        self.quiet = 0 if busy or updated or changed or after != seen else self.quiet + 1
        self._seen = after
        self.due = self.clock() + self.next_delay()
        return updated

    def _cycle_failed(self, why: str) -> None:
        self.health.failures += 1
        self.health.last_error, self.health.last_error_time = why, self.clock()
        self.due = self.clock() + self.next_delay()

    def _job_error(self, why: str) -> None:
        self.health.job_errors += 1
        self.health.last_error, self.health.last_error_time = why, self.clock()

    @contextlib.contextmanager
    def _isolated(self, job_id: int) -> Iterator[None]:
        """Keep an error to one job: logged with its traceback, counted, the others go on."""
        try:
            yield
        except Exception as e:
            log.exception("monitor: job %s", job_id)
            self._job_error(f"job {job_id}: {type(e).__name__}: {e}")

    def _admit(self) -> None:
        """Run the admission pass when a job of ours has started waiting for nodes since the last
        cycle (each waiting attempt once: a job that cannot be admitted now waits for cron)."""
        if self.on_waiting is None:
            return
        fresh = {(j.id, j.current.number) for j in self.store.open_jobs() if j.current is not None and waiting(j)}
        new, self.admission_seen = fresh - self.admission_seen, fresh
        if new:
            self.on_waiting()

    def _ingest(self) -> None:
        now = self.clock()
        for job in self.store.open_jobs():
            if job.job_dir and job.current is not None and job.current.slurm_job_id is not None:
                with self._isolated(job.id):
                    self.files.ingest(job, now)

    def _poll(self) -> int:
        jobs = self.store.open_jobs()
        attempts = reconcile.tracked_attempts(jobs)
        if not attempts:
            return 0
        queue = {r.job_id: r for r in (self.queue_source or self.client.queue)()}
        by_id = {j.id: j for j in jobs}
        for a in attempts:
            record = queue.get(a.slurm_job_id or -1)
            if record is not None and reconcile.requeued_since(a, record):
                with self._isolated(a.job_id):
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
                self._sacct_error = e
        self.handovers.check(self.store.open_jobs(), queue)
        self._drop_needless_grows()
        updates = reconcile.reconcile(attempts, queue, accounting)
        now = self.clock()
        jobs_now = {j.id: j for j in self.store.open_jobs()}
        for u in updates:
            with self._isolated(u.job_id):
                if self._withdraw_grow(jobs_now.get(u.job_id), u, queue, now):
                    continue
                self.store.update_attempt(u.job_id, u.number, now, **u.changes)
        return len(updates)

    def _drop_needless_grows(self) -> None:
        """A job that completed while its grow's allocation waited: that allocation is cancelled
        and the grow withdrawn, so the job shows COMPLETED now, not once the allocation starts."""
        for job in self.store.open_jobs():
            if not reconcile.completed_while_growing(job):
                continue
            with self._isolated(job.id):
                previous, cur = job.attempts[-2], job.attempts[-1]
                assert cur.slurm_job_id is not None
                self.client.cancel(cur.slurm_job_id)
                self.store.remove_attempt(job.id, cur.number, self.clock(),
                                          f"grow withdrawn: the job completed in Slurm job {previous.slurm_job_id} "
                                          f"before its larger allocation, Slurm job {cur.slurm_job_id}, started; "
                                          "that one was cancelled")

    def _withdraw_grow(self, job: Job | None, update: reconcile.AttemptUpdate,
                       queue: Mapping[int, SlurmJobRecord], now: float) -> bool:
        """A grow whose allocation ended before it started is withdrawn (:func:`reconcile.withdrawn_grow`)."""
        if job is None or len(job.attempts) < 2:
            return False
        previous, cur = job.attempts[-2], job.attempts[-1]
        started = cur.slurm_job_id is not None and layout.ran_in(job.job_dir, cur.slurm_job_id)
        why = reconcile.withdrawn_grow(job, update, queue.get(previous.slurm_job_id or -1), started)
        if why is None:
            return False
        log.warning("job %s: %s", job.id, why)
        self.store.remove_attempt(job.id, cur.number, now, why)
        return True
