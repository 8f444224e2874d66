"""Applying submission plans: intent committed first, then sbatch, then the Slurm id recorded.

Whenever sbatch's outcome is not known — a crash between those steps (A1, A2), an sbatch that
exits non-zero or times out after Slurm queued the job (A3) — the Slurm job is looked up by the
tag in its comment and adopted, or submitted (or failed) if Slurm never got it: never twice, and
never FAILED while Slurm runs it. The rule is :func:`hpcsched.daemon.reconcile.settle_by_tag`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import psutil

from hpcsched.config import Settings
from hpcsched.daemon import owners
from hpcsched.daemon.faults import fault_point
from hpcsched.daemon.reconcile import TagVerdict, find_by_tag, settle_by_tag
from hpcsched.daemon.store import Store
from hpcsched.errors import HpcschedError
from hpcsched.jobs import layout
from hpcsched.jobs.model import Job, JobState
from hpcsched.planning.dry_run import DryRun, preview
from hpcsched.planning.plan import SubmissionPlan, dry_run_plan, job_tag, plan_submission
from hpcsched.planning.request import JobRequest
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord, SlurmParseError
from hpcsched.slurm.runner import SlurmCommandError

log = logging.getLogger(__name__)

# An sbatch that got no answer may still be queued by slurmctld (its RPC arrived; the reply did
# not): the job is looked up by its tag this long before it is taken for never submitted.
NO_ANSWER_GRACE_S = 120.0


class BatchScriptError(HpcschedError):
    """The batch script could not be written; nothing was submitted."""


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
        self._recovered = False
        # (job, attempt) whose sbatch may have reached Slurm: looked up by tag before anything else.
        self._unknown: set[tuple[int, int]] = set()
        self._no_answer: dict[tuple[int, int], float] = {}  # sbatch got no answer: look up until then
        # Site mode: the coordinator's decisions directory, passed to every elastic job's driver.
        self.site_decisions: Callable[[], str | None] = lambda: None

    def accept(self, request: JobRequest, uid: int, user: str) -> int:
        """Commit the job (intent) and return its id; nothing is submitted yet. The id is claimed
        in the shared jobs directory first, so no daemon of this user on another login node has it."""
        job_id = owners.claim_job_id(self.settings.jobs_dir, self.store.next_job_id(), self.owner)
        try:
            return self.store.create_job(
                name=request.name, uid=uid, user=user, request=request.to_options(),
                nodes=request.nodes.max, jobs_root=self.settings.jobs_dir, now=self.clock(), job_id=job_id,
            )
        except BaseException:
            owners.release_claim(self.settings.jobs_dir, job_id)  # the store has no such job: no claim either
            raise

    @property
    def owner(self) -> owners.Owner:
        return owners.Owner(self.settings.host, self.store.store_id)

    def plan(self, job: Job) -> SubmissionPlan:
        """The plan for the job's current attempt: the first submission, or a grown successor
        allocation that takes over from the attempt before it."""
        request = JobRequest.from_options(job.request)
        cur = job.current
        assert cur is not None
        if cur.number == 1:
            return plan_submission(request, job_id=job.id, store_id=self.store.store_id, job_dir=job.job_dir,
                                   python=self.settings.launcher_python, nonce=job.nonce,
                                   site_decisions=self.site_decisions())
        previous = job.attempts[-2]
        return plan_submission(
            request, job_id=job.id, store_id=self.store.store_id, job_dir=job.job_dir,
            python=self.settings.launcher_python, nodes=str(cur.nodes), predecessor=previous.slurm_job_id,
            attempt=cur.number, nonce=job.nonce, site_decisions=self.site_decisions(),
        )

    def preview(self, request: JobRequest, env: Mapping[str, str] = os.environ) -> DryRun:
        """What :meth:`plan` and the launcher would make of ``request`` as a new job, with this
        daemon's settings, store id and environment (``--dry-run``); nothing is recorded."""
        plan = dry_run_plan(request, jobs_root=self.settings.jobs_dir, store_id=self.store.store_id,
                            python=self.settings.launcher_python, site_decisions=self.site_decisions())
        return preview(plan, request, env)

    def submit(self, job_id: int) -> Job:
        """Submit a committed job unless it already has a Slurm id or was cancelled.

        Any sbatch failure is resolved by looking the job's tag up (A3): a job Slurm queued anyway
        is adopted and returned as submitted; one Slurm does not have fails (a first attempt,
        :class:`SlurmCommandError` raised) or is withdrawn (a grow); when Slurm cannot be asked,
        the attempt stays SUBMITTING and :meth:`settle` decides on a later cycle."""
        with self._lock:
            return self._submit(self._job(job_id))

    def settle(self) -> list[str]:
        """Each monitor cycle: finish every attempt committed without a Slurm id. One whose sbatch
        may have reached Slurm (all of them after a restart, A1/A2; an sbatch error whose lookup
        failed, A3) is looked up by its tag first, in one batched lookup. Each job is isolated:
        returns the errors ("job N: ..."), one per job that hit one."""
        errors: list[str] = []
        with self._lock:
            waiting = self._waiting()
            if not self._recovered:
                self._unknown.update(_key(j) for j in waiting)
                self._wait_for_orphan_sbatch(waiting)
                self._recovered = True
            unknown = [j for j in waiting if _key(j) in self._unknown]
            records = self._lookup(unknown) if unknown else []
            for job in waiting:
                try:
                    if _key(job) in self._unknown:
                        self._apply(job, *self._verdict(job, records, sbatch_failed=False), why=self._why(job))
                    else:
                        self._submit(job)
                except Exception as e:  # one job's trouble never stops the others
                    log.exception("submitting job %s failed", job.id)
                    errors.append(f"job {job.id}: {e}")
        return errors

    def _submit(self, job: Job) -> Job:
        attempt = job.current
        if attempt is None or attempt.state is not JobState.SUBMITTING or attempt.slurm_job_id is not None:
            return job
        if _key(job) in self._unknown:  # an earlier sbatch may have queued it: look before acting
            self._apply(job, *self._verdict(job, self._lookup([job]), sbatch_failed=False), why=self._why(job))
            return self._job(job.id)
        now = self.clock()
        if job.cancel_requested:
            self.store.update_attempt(job.id, attempt.number, now, state=JobState.CANCELLED,
                                      state_reason="cancelled before submission", end_time=now)
            return self._job(job.id)
        plan = self.plan(job)
        self._write_script(job, plan)
        fault_point("before_sbatch")
        try:
            slurm_id = self.client.submit(plan.argv)
        except (SlurmCommandError, SlurmParseError) as e:
            return self._after_sbatch_error(job, e)
        fault_point("after_sbatch")
        self.store.update_attempt(job.id, attempt.number, self.clock(), slurm_job_id=slurm_id,
                                  state=JobState.PENDING, submit_time=now)
        self.store.record_event(job.id, self.clock(), "submitted", f"Slurm job {slurm_id}")
        return self._job(job.id)

    def _write_script(self, job: Job, plan: SubmissionPlan) -> None:
        """Nothing is submitted when the batch script cannot be written: the attempt fails (a first
        one) or is withdrawn (a grow) with the path and the reason. Not retried: a directory
        without room or permission needs the user, who sees the reason at once."""
        try:
            self._make_job_dir(job, plan.job_dir)
            write_atomically(plan.script_path, plan.script_text, 0o700)
        except OSError as e:
            why = f"cannot write the batch script {plan.script_path}: {e.strerror or e}"
            self._give_up(job, why)
            raise BatchScriptError(why) from e

    def _make_job_dir(self, job: Job, job_dir: str) -> None:
        """A first submission creates the job's directory for this job alone (D4, G5); a job
        recorded by an earlier version (no nonce) and a later attempt use the one they have."""
        cur = job.current
        if job.nonce and cur is not None and cur.number == 1:
            identity = {"store_id": self.store.store_id, "job_id": str(job.id), "nonce": job.nonce}
            layout.create_job_dir(job_dir, identity)
        else:
            os.makedirs(job_dir, mode=0o700, exist_ok=True)

    def _after_sbatch_error(self, job: Job, error: SlurmCommandError | SlurmParseError) -> Job:
        why = _sbatch_error_text(error)
        log.warning("sbatch for job %s failed (%s); looking its tag up", job.id, why)
        self.store.record_event(job.id, self.clock(), "sbatch_error", why)
        if _no_answer(error):  # slurmctld may have queued it all the same, and list it later
            self._no_answer[_key(job)] = self.clock() + NO_ANSWER_GRACE_S
        verdict, found = self._verdict(job, self._lookup([job]), sbatch_failed=True)
        self._apply(job, verdict, found, why)
        if verdict in (TagVerdict.FAIL, TagVerdict.WITHDRAW):
            raise error
        return self._job(job.id)

    def _lookup(self, jobs: list[Job]) -> list[SlurmJobRecord] | None:
        """squeue, and sacct since the oldest job's creation: where a tag can be found. None when
        Slurm did not answer."""
        since = min(j.created for j in jobs) - 300
        try:
            return list(self.client.queue()) + list(self.client.accounting(since=since))
        except (SlurmCommandError, SlurmParseError) as e:
            log.warning("cannot look up jobs %s by tag, will retry: %s", [j.id for j in jobs], e)
            return None

    def _verdict(self, job: Job, records: list[SlurmJobRecord] | None,
                 sbatch_failed: bool) -> tuple[TagVerdict, SlurmJobRecord | None]:
        number = job.current.number if job.current else 1
        found = find_by_tag(records or [], job_tag(self.store.store_id, job.id, number))
        deadline = self._no_answer.get(_key(job))
        failed = sbatch_failed or deadline is not None
        may_appear = deadline is not None and self.clock() < deadline
        return settle_by_tag(found, records is not None, failed, number, may_appear), found

    def _why(self, job: Job) -> str:
        """The reason recorded while an sbatch that got no answer is looked up, and if it fails."""
        if _key(job) not in self._no_answer:
            return ""
        return f"sbatch got no answer and Slurm has not listed the job (looked up for {NO_ANSWER_GRACE_S:.0f} s)"

    def _apply(self, job: Job, verdict: TagVerdict, found: SlurmJobRecord | None, why: str = "") -> None:
        """Carry out the verdict of :func:`settle_by_tag` (the thin effect of that rule)."""
        cur = job.current
        assert cur is not None
        now = self.clock()
        if verdict is TagVerdict.WAIT:
            self._unknown.add(_key(job))
            if why:
                self.store.update_attempt(job.id, cur.number, now,
                                          state_reason=f"{why}; looking the job up by its tag")
            return
        self._unknown.discard(_key(job))
        self._no_answer.pop(_key(job), None)
        if verdict is TagVerdict.ADOPT:
            assert found is not None
            self._adopt(job, found)
        elif verdict is TagVerdict.SUBMIT:
            self._submit(job)
        else:
            self._give_up(job, why)

    def _adopt(self, job: Job, found: SlurmJobRecord) -> None:
        cur = job.current
        assert cur is not None
        log.info("adopting Slurm job %s for job %s", found.job_id, job.id)
        self.store.update_attempt(job.id, cur.number, self.clock(), slurm_job_id=found.job_id,
                                  state=JobState.PENDING, state_reason="", submit_time=found.submit_time)
        self.store.record_event(job.id, self.clock(), "adopted", f"Slurm job {found.job_id}")
        if job.cancel_requested:  # cancelled while its fate was unknown: now it can be reached
            self.client.cancel(found.job_id)

    def _give_up(self, job: Job, why: str) -> None:
        cur = job.current
        assert cur is not None
        now = self.clock()
        if cur.number > 1:  # a resize that could not be queued: the job goes on as it was
            self.store.remove_attempt(job.id, cur.number, now, why)
        else:
            self.store.update_attempt(job.id, cur.number, now, state=JobState.FAILED, state_reason=why, end_time=now)

    def _waiting(self) -> list[Job]:
        return [j for j in self.store.open_jobs()
                if j.current is not None and j.current.state is JobState.SUBMITTING and j.current.slurm_job_id is None]

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


def _key(job: Job) -> tuple[int, int]:
    return job.id, job.current.number if job.current else 1


def _no_answer(error: SlurmCommandError | SlurmParseError) -> bool:
    """Whether an sbatch error leaves open that Slurm queued the job: sbatch timed out (killed,
    or Slurm's own "Socket timed out" error) or printed something that is not a job id."""
    if isinstance(error, SlurmParseError):
        return True
    return error.timed_out or "timed out" in error.stderr.lower()


def _sbatch_error_text(error: SlurmCommandError | SlurmParseError) -> str:
    if isinstance(error, SlurmCommandError) and error.stderr.strip() and not error.timed_out:
        return f"sbatch rejected the job: {error.stderr.strip()}"
    return str(error)
