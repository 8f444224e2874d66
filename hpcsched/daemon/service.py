"""What the daemon does for a caller: one method per socket operation, with access checks.

A caller may see and act on their own jobs only; operators (site mode) on all, and every action
an operator takes on another user's job is recorded as an event (audit).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpcsched import __version__
from hpcsched.config import MAX_REBALANCE_WAIT_S
from hpcsched.daemon import owners
from hpcsched.daemon.monitor import Monitor
from hpcsched.daemon.rebalance import RebalanceBusy, Rebalancer
from hpcsched.daemon.resize import Resizer
from hpcsched.daemon.store import Store
from hpcsched.daemon.submission import Submitter
from hpcsched.errors import AccessDenied, JobNotFound, ValidationError
from hpcsched.jobs.model import Job
from hpcsched.planning import fields, preflight
from hpcsched.planning.request import JobRequest
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.partitions import JobShape, check_fits

if TYPE_CHECKING:
    from hpcsched.site.agent import SiteAgent

log = logging.getLogger(__name__)
MAX_ID = 999_999_999  # a job id or a job count the socket accepts (SQLite's integers end at 2**63)


@dataclass(frozen=True)
class Caller:
    uid: int
    user: str
    operator: bool = False


class JobService:
    def __init__(self, store: Store, client: SlurmClient, submitter: Submitter, monitor: Monitor,
                 stop: threading.Event, clock: Callable[[], float] = time.time, backend: str = "cli",
                 state_dir: str = ".") -> None:
        self.store = store
        self.client = client
        self.submitter = submitter
        self.monitor = monitor
        self.stop = stop
        self.clock = clock
        self.backend = backend
        self.resizer = Resizer(store, client, submitter, clock)
        self.rebalancer = Rebalancer(store, client, self.resizer, monitor.files, state_dir, clock)
        self.site: SiteAgent | None = None  # site mode: the link to the coordinator

    def handle(self, op: str, args: dict[str, Any], caller: Caller) -> Any:
        handler = getattr(self, f"op_{op}")
        return handler(args, caller)

    def op_ping(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": __version__, "store_id": self.store.store_id,
                "open_jobs": len(self.store.open_jobs()), "slurm_backend": self.backend,
                "monitor": self.monitor.health.report(self.clock(), self.monitor.interval),
                "site": self.site.health() if self.site is not None else None}

    def _checked_request(self, args: dict[str, Any]) -> JobRequest:
        raw = args.get("request")
        if not isinstance(raw, dict):
            raise ValidationError("request", "missing")
        request = JobRequest.from_options(raw)
        # The socket is the trust boundary: everything the CLI checked is checked again here.
        preflight.check_job_files(request.workdir, request.script)
        preflight.check_workdir_tree(request.workdir, request.script, skip=(self.submitter.settings.jobs_dir,))
        known = self.client.partitions()
        if known is not None:
            shape = JobShape(request.partition, request.start_nodes or request.nodes.min, request.cpus_per_node,
                             request.gpus_per_node)
            check_fits(shape, *known)
        return request

    def op_plan(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """``run --dry-run``: the plan this daemon would apply to the request, checked as ``run``
        checks it; nothing is recorded or submitted."""
        return self.submitter.preview(self._checked_request(args)).as_dict()

    def op_run(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        request = self._checked_request(args)
        submit_now = args.get("submit_now", True)
        if not isinstance(submit_now, bool):
            raise ValidationError("submit_now", f"{submit_now!r} is not true or false")
        job_id = self.submitter.accept(request, caller.uid, caller.user)
        # The job is durable now (intent committed). With submit_now false the caller is answered
        # at once and the monitor runs sbatch (H1: a burst of requests is acknowledged without
        # waiting for each other's sbatch); the CLI then waits for the Slurm id itself.
        job = self.submitter.submit(job_id) if submit_now else self.store.get_job(job_id)
        self.monitor.wakeup.set()
        assert job is not None
        return job.as_dict(self.clock())

    def op_status(self, args: dict[str, Any], caller: Caller) -> list[dict[str, Any]]:
        now = self.clock()
        if args.get("job") is not None:
            return [self._job_for(args, caller).as_dict(now)]
        limit = fields.parse_count("--limit", str(args.get("limit", 1000)), 1, MAX_ID)
        jobs = self.store.list_jobs(None if caller.operator else caller.uid, limit=limit)
        return [j.as_dict(now) for j in jobs]

    def op_events(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """What happened to a job, oldest first (the store's events: state changes, resizes,
        hand-overs held, grows withdrawn, rebalance decisions, operators' actions)."""
        job = self._job_for(args, caller)
        return {"job": job.id, "events": [{"time": t, "kind": kind, "detail": detail}
                                          for t, kind, detail in self.store.events(job.id)]}

    def op_cancel(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = self._job_for(args, caller, acting=True)
        if job.state.is_final:
            return job.as_dict(self.clock())
        self.store.request_cancel(job.id, self.clock())
        cur = job.current
        live = {a.slurm_job_id for a in job.attempts if a.slurm_job_id is not None and not a.state.is_final}
        for slurm_job_id in sorted(live):  # a growing job has its old and its new allocation
            self.client.cancel(slurm_job_id)
        if cur is None or cur.slurm_job_id is None:
            self.submitter.submit(job.id)  # under the submit lock: marks it CANCELLED, or it was just submitted
            fresh = self._job_for(args, caller)
            if fresh.current is not None and fresh.current.slurm_job_id is not None and not fresh.state.is_final:
                self.client.cancel(fresh.current.slurm_job_id)
        self.monitor.wakeup.set()
        return self._job_for(args, caller).as_dict(self.clock())

    def op_resize(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = self._job_for(args, caller, acting=True)
        nodes = args.get("nodes")
        if not isinstance(nodes, int):
            raise ValidationError("--nodes", f"{nodes!r} is not a node count")
        return self.resizer.resize(job, nodes, str(args.get("mode") or "auto")).as_dict(self.clock())

    def op_rebalance(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        if caller.uid != os.getuid() and not caller.operator:
            raise AccessDenied("only the daemon's owner or an operator may rebalance")
        wait = args.get("wait_s", 0.0)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_REBALANCE_WAIT_S:
            raise ValidationError("--wait", f"{wait!r} is not a number of seconds from 0 to {MAX_REBALANCE_WAIT_S:.0f}")
        if self.site is not None:
            return self.site.plan(bool(args.get("dry_run")))
        return self.rebalancer.run(dry_run=bool(args.get("dry_run")), wait_s=float(wait))

    def admission_pass(self) -> None:
        """The monitor's hook: make room for a job of ours that waits for nodes (rebalance.py)."""
        try:
            result = self.rebalancer.run(dry_run=False, admit_only=True)
        except RebalanceBusy:
            return  # a full pass is running, and it sees the waiting job too
        except Exception:  # the monitor must go on whatever a pass does
            log.exception("admission pass failed")
            return
        applied = [f"job {d['job']} {d['current_nodes']}->{d['target_nodes']}" for d in result["decisions"] if d["applied"]]
        if applied:
            log.info("admission pass: %s", ", ".join(applied))

    def op_log_path(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        job = self._job_for(args, caller)
        number = args.get("attempt")
        attempts = {a.number: a for a in job.attempts}
        if number is None:
            number = max(attempts) if attempts else 1
        if not isinstance(number, int) or number not in attempts:
            raise ValidationError("--attempt", f"job {job.id} has attempts {sorted(attempts)}, not {number}")
        attempt = attempts[number]
        return {"job": job.id, "attempt": number, "path": attempt.log_path, "state": job.state.value,
                "final": job.state.is_final, "job_dir": job.job_dir}

    def op_shutdown(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        if caller.uid != os.getuid():
            raise AccessDenied(f"only the daemon's owner may stop it (you are uid {caller.uid})")
        self.stop.set()
        self.monitor.wakeup.set()
        return {"stopping": True, "pid": os.getpid()}

    def _job_for(self, args: dict[str, Any], caller: Caller, acting: bool = False) -> Job:
        job_id = fields.parse_count("JOB", str(args.get("job")), 1, MAX_ID)  # whatever JSON the socket carried
        job = self.store.get_job(job_id)
        if job is None:
            jobs_dir = self.submitter.settings.jobs_dir
            raise JobNotFound(owners.elsewhere_message(job_id, owners.owner_of(jobs_dir, job_id), self.submitter.owner))
        if job.uid != caller.uid:
            if not caller.operator:
                log.warning("uid %s denied access to job %s of uid %s", caller.uid, job.id, job.uid)
                raise AccessDenied(f"job {job_id} belongs to another user")
            if acting:
                self.store.record_event(job.id, self.clock(), "operator_action", f"by uid {caller.uid}")
        return job

