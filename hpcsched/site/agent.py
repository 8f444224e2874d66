"""The personal daemon's side of site mode: it reports its user's elastic jobs to the coordinator,
takes the job states from the coordinator's poll instead of asking Slurm itself, and carries out
the grows the coordinator offers (make-before-break needs an allocation submitted as the user).

Shrinks need no agent: the job's own driver carries them out (:mod:`.coordinator`). When the
coordinator cannot be reached the daemon asks Slurm itself, as in personal mode, and says so in
its log; it never runs a pass of its own while site mode is configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from hpcsched.daemon.client import send
from hpcsched.daemon.ingest import JobFiles
from hpcsched.daemon.resize import Resizer
from hpcsched.daemon.store import Store
from hpcsched.errors import HpcschedError
from hpcsched.jobs.model import Job
from hpcsched.planning.fields import format_count
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord
from hpcsched.slurm.states import to_job_state

from .describe import describe
from .views import view_to_json

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 10.0


def record_from_json(data: dict[str, Any]) -> SlurmJobRecord:
    """A queue record as the coordinator sends it (its own parse of ``squeue``)."""
    fields = dict(data)
    fields["state"] = to_job_state(str(fields.get("slurm_state", "")))
    return SlurmJobRecord(**fields)


def report_item(job: Job, records: list[dict[str, Any]], now: float) -> dict[str, Any] | None:
    """What the coordinator is told of one open job; None for a job it must treat as rigid (pure,
    :func:`.describe.describe`)."""
    rep = describe(job, records, now)
    if rep is None:
        return None
    return {"slurm_job_id": rep.slurm_job_id, "job_id": job.id, "name": job.name, "view": view_to_json(rep.view),
            "related": list(rep.related), "measured": rep.measured, "sizes_seen": rep.sizes_seen}


class SiteAgent:
    def __init__(self, socket_path: str, store: Store, files: JobFiles, resizer: Resizer, client: SlurmClient,
                 clock: Callable[[], float] = time.time) -> None:
        self.socket_path = socket_path
        self.store, self.files, self.resizer, self.client, self.clock = store, files, resizer, client, clock
        self.decisions_dir: str | None = None
        self.interval = 10.0
        self.next_sync = 0.0
        self.reachable = False
        self.last_error = ""
        self.outcomes: list[dict[str, Any]] = []  # what became of the grows offered, for the next report

    def _call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        try:
            result = send(self.socket_path, op, args, CALL_TIMEOUT_S, who="site coordinator")
        except HpcschedError as e:
            if self.reachable or not self.last_error:
                log.warning("site coordinator unreachable (%s): asking Slurm directly meanwhile", e)
            self.reachable, self.last_error = False, str(e)
            raise
        if not self.reachable:
            log.info("site coordinator reachable on %s", self.socket_path)
        self.reachable, self.last_error = True, ""
        return result

    def health(self) -> dict[str, Any]:
        return {"coordinator": self.socket_path, "reachable": self.reachable, "last_error": self.last_error}

    def plan(self, dry_run: bool) -> dict[str, Any]:
        """``hpcsched rebalance`` in site mode: the coordinator's plan; nothing is decided here."""
        if not dry_run:
            raise HpcschedError(f"site mode: the site coordinator ({self.socket_path}) sizes every elastic job "
                                f"every {self.interval:g} s; `hpcsched rebalance --dry-run` shows its plan")
        answer = self._call("plan", {})
        return {"dry_run": True, "site": True, **answer}

    def site_decisions(self) -> str | None:
        """The coordinator's decisions directory, for the batch scripts of elastic jobs."""
        if self.decisions_dir is None:
            try:
                self.decisions_dir = str(self._call("hello")["decisions_dir"])
            except (HpcschedError, KeyError, TypeError):
                return None
        return self.decisions_dir

    def queue(self) -> list[SlurmJobRecord]:
        """The user's jobs from the coordinator's last poll; from Slurm when the coordinator cannot
        be reached or its poll is older than the newest submission or attempt start this daemon
        knows of (an older poll would undo what the job's own records just said, e.g. a shrink)."""
        newest = max((max(a.submit_time or 0.0, a.start_time or 0.0) for j in self.store.open_jobs() for a in j.attempts),
                     default=0.0)
        try:
            answer = self._call("queue")
            taken = answer.get("time")
            if isinstance(taken, (int, float)) and taken > newest:
                return [record_from_json(r) for r in answer.get("jobs", [])]
        except (HpcschedError, TypeError, ValueError, KeyError):
            pass
        return self.client.queue()

    def sync(self) -> None:
        """Report the open elastic jobs and carry out the grows offered; at most once per the
        coordinator's interval. Errors are logged; the monitor goes on."""
        now = self.clock()
        if now < self.next_sync:
            return
        self.next_sync = now + self.interval
        items = [item for job in self.store.open_jobs()
                 if (item := report_item(job, self.files.records(job.id), now)) is not None]
        try:
            answer = self._call("report", {"jobs": items, "outcomes": self.outcomes, "store": self.store.store_id})
        except HpcschedError:
            return
        self.outcomes = []
        self.interval = float(answer.get("interval") or self.interval)
        self.decisions_dir = str(answer.get("decisions_dir") or "") or self.decisions_dir
        for refused in answer.get("refused", []):
            log.info("coordinator did not take Slurm job %s: %s", refused.get("slurm_job_id"), refused.get("why"))
        for action in answer.get("actions", []):
            self._grow(action)

    def _grow(self, action: dict[str, Any]) -> None:
        sid, nodes = action.get("slurm_job_id"), action.get("nodes")
        job = next((j for j in self.store.open_jobs() if j.current is not None and j.current.slurm_job_id == sid), None)
        decision = str(action.get("decision", ""))
        if job is None or not isinstance(nodes, int):
            self.outcomes.append({"decision": decision, "ok": False, "error": f"no open job runs as Slurm job {sid}"})
            return
        try:
            self.resizer.resize(job, nodes, "grow")
            self.store.record_event(job.id, self.clock(), "site", f"grow to {format_count(nodes, 'node')} decided by the "
                                    "coordinator "
                                    f"({decision}): {action.get('reason', '')}")
            self.outcomes.append({"decision": decision, "ok": True, "error": ""})
        except HpcschedError as e:
            log.warning("grow of job %s offered by the coordinator not carried out: %s", job.id, e)
            self.outcomes.append({"decision": decision, "ok": False, "error": str(e)[:500]})
