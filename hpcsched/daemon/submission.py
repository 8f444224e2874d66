"""Applying submission plans: intent committed first, then sbatch, then the Slurm id recorded.

After a crash between those steps, :meth:`Submitter.recover` finds the Slurm job by the tag in its
comment and adopts it, or submits it if Slurm never got it — never twice (A1, A2).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import psutil

from hpcsched.config import Settings
from hpcsched.daemon.faults import fault_point
from hpcsched.daemon.reconcile import find_by_tag
from hpcsched.daemon.store import Store
from hpcsched.jobs.model import Job, JobState
from hpcsched.planning.plan import SubmissionPlan, job_tag, plan_submission
from hpcsched.planning.request import JobRequest
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.runner import SlurmCommandError

log = logging.getLogger(__name__)


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class Submitter:
    def __init__(self, store: Store, client: SlurmClient, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()

    def accept(self, request: JobRequest, uid: int, user: str) -> int:
        """Commit the job (intent) and return its id; nothing is submitted yet."""
        return self.store.create_job(
            name=request.name, uid=uid, user=user, request=request.to_options(),
            nodes=request.nodes.max, jobs_root=self.settings.jobs_dir, now=self.clock(),
        )

    def plan(self, job: Job) -> SubmissionPlan:
        """The plan for the job's current attempt: the first submission, or a grown successor
        allocation that takes over from the attempt before it."""
        request = JobRequest.from_options(job.request)
        cur = job.current
        assert cur is not None
        if cur.number == 1:
            return plan_submission(request, job_id=job.id, store_id=self.store.store_id, job_dir=job.job_dir,
                                   python=self.settings.launcher_python)
        previous = job.attempts[-2]
        return plan_submission(
            request, job_id=job.id, store_id=self.store.store_id, job_dir=job.job_dir,
            python=self.settings.launcher_python, nodes=str(cur.nodes), predecessor=previous.slurm_job_id,
            attempt=cur.number,
        )

    def submit(self, job_id: int) -> Job:
        """Submit a committed job unless it already has a Slurm id or was cancelled."""
        with self._lock:
            job = self._job(job_id)
            attempt = job.current
            if attempt is None or attempt.state is not JobState.SUBMITTING or attempt.slurm_job_id is not None:
                return job
            now = self.clock()
            if job.cancel_requested:
                self.store.update_attempt(job.id, attempt.number, now, state=JobState.CANCELLED,
                                          state_reason="cancelled before submission", end_time=now)
                return self._job(job_id)
            plan = self.plan(job)
            os.makedirs(plan.job_dir, mode=0o700, exist_ok=True)
            write_atomically(plan.script_path, plan.script_text, 0o700)
            fault_point("before_sbatch")
            try:
                slurm_id = self.client.submit(plan.argv)
            except SlurmCommandError as e:
                if e.timed_out:
                    # Slurm may or may not have the job: leave it SUBMITTING; recover() decides.
                    log.warning("sbatch for job %s timed out; will look it up by tag", job.id)
                    raise
                why = f"sbatch rejected the job: {e.stderr.strip() or e}"
                if attempt.number > 1:  # a resize that could not be queued: the job goes on as it was
                    self.store.remove_attempt(job.id, attempt.number, now, why)
                else:
                    self.store.update_attempt(job.id, attempt.number, now, state=JobState.FAILED,
                                              state_reason=why, end_time=now)
                raise
            fault_point("after_sbatch")
            self.store.update_attempt(job.id, attempt.number, self.clock(), slurm_job_id=slurm_id,
                                      state=JobState.PENDING, submit_time=now)
            self.store.record_event(job.id, self.clock(), "submitted", f"Slurm job {slurm_id}")
            return self._job(job_id)

    def recover(self) -> None:
        """Finish what a crashed daemon left between commit and the recorded Slurm id."""
        waiting = [j for j in self.store.open_jobs()
                   if j.current is not None and j.current.state is JobState.SUBMITTING
                   and j.current.slurm_job_id is None]
        if not waiting:
            return
        self._wait_for_orphan_sbatch(waiting)
        since = min(j.created for j in waiting) - 300
        records = list(self.client.queue()) + list(self.client.accounting(since=since))
        for job in waiting:
            tag = job_tag(self.store.store_id, job.id, job.current.number if job.current else 1)
            found = find_by_tag(records, tag)
            cur = job.current
            assert cur is not None
            if found is not None:
                log.info("adopting Slurm job %s for job %s after restart", found.job_id, job.id)
                self.store.update_attempt(job.id, cur.number, self.clock(), slurm_job_id=found.job_id,
                                          state=JobState.PENDING, submit_time=found.submit_time)
                self.store.record_event(job.id, self.clock(), "adopted", f"Slurm job {found.job_id}")
            else:
                try:
                    self.submit(job.id)
                except SlurmCommandError as e:
                    log.error("submitting job %s after restart failed: %s", job.id, e)

    def _wait_for_orphan_sbatch(self, jobs: list[Job], timeout: float = 30.0) -> None:
        """An sbatch started by the crashed daemon may still be running: let it finish first."""
        scripts = {f"{j.job_dir}/batch.sh" for j in jobs}
        deadline = self.clock() + timeout
        uid = os.getuid()
        while self.clock() < deadline:
            busy = False
            for proc in psutil.process_iter(["name", "uids", "cmdline"]):
                info = proc.info
                if info["name"] == "sbatch" and info["uids"] and info["uids"].real == uid \
                        and scripts.intersection(info["cmdline"] or ()):
                    busy = True
            if not busy:
                return
            time.sleep(0.1)

    def _job(self, job_id: int) -> Job:
        job = self.store.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        return job
