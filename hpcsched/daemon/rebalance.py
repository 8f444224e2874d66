"""One rebalance pass of a personal daemon: the same decision as the site coordinator's
(:func:`hpcsched.site.decide.decide`: per partition, the good-citizen rules, then the allocator
over the user's elastic jobs, running and waiting), carried out here by the resizer (shrink in
place, make-before-break grow), every decision recorded as an event of its job. Run by
``hpcsched rebalance`` (from cron), and by the daemon when one of its jobs waits for nodes: then
as an admission pass, which applies only shrinks, and only in a partition where they start a
waiting job (anybody's, as Slurm orders them); it grows nothing. A waiting job made room for is
left to Slurm, which starts it on the nodes set free. In site mode the coordinator decides and
no personal pass runs.

Never two passes at once: an exclusive lock on local disk (``rebalance.lock`` in the state
directory); a second pass reports busy and changes nothing (H2), or first waits a while for the
lock when asked to (``hpcsched rebalance --wait``, as the cron entry does). A pass that dies half way
leaves no job stranded: each resize it started is an attempt committed before its signal, and
the daemon re-sends the signal of any resize request still pending when it starts (A7).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hpcsched.daemon import statedir
from hpcsched.daemon.faults import fault_point
from hpcsched.daemon.ingest import JobFiles
from hpcsched.daemon.rebalance_plan import in_nodes, measured_nodes, waiting
from hpcsched.daemon.resize import Resizer, waiting_successor
from hpcsched.daemon.store import Store
from hpcsched.errors import HpcschedError
from hpcsched.jobs.model import Job, JobState
from hpcsched.site.citizen import partitions
from hpcsched.site.decide import decide
from hpcsched.site.describe import describe
from hpcsched.slurm.client import SlurmClient

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.2


class RebalanceBusy(HpcschedError):
    pass


@contextmanager
def pass_lock(state_dir: str, wait_s: float = 0.0) -> Iterator[None]:
    """The one-pass-at-a-time lock; a pass that finds it taken waits up to ``wait_s`` for it.
    The lock file is opened as the state directory's other files are: a planted link is refused
    (``UnsafePath``), never followed (G5)."""
    fd = statedir.open_private_file(os.path.join(state_dir, "rebalance.lock"), os.O_RDWR)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" after waiting {wait_s:g} s" if wait_s else ""
                    raise RebalanceBusy(f"rebalance busy: another pass is running{waited}; this one changed nothing") from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def resizable(job: Job) -> bool:
    cur = job.current
    return job.elastic and cur is not None and cur.state is JobState.RUNNING and not job.cancel_requested \
        and waiting_successor(job) is None


class Rebalancer:
    def __init__(self, store: Store, client: SlurmClient, resizer: Resizer, files: JobFiles, state_dir: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.client, self.resizer, self.files = store, client, resizer, files
        self.state_dir, self.clock = state_dir, clock

    def run(self, dry_run: bool, admit_only: bool = False, wait_s: float = 0.0) -> dict[str, Any]:
        with pass_lock(self.state_dir, wait_s):
            hold = float(os.environ.get("HPCSCHED_REBALANCE_HOLD") or 0)  # tests: keep the lock a while
            if hold:
                time.sleep(hold)
            return self._pass(dry_run, admit_only)

    def _pass(self, dry_run: bool, admit_only: bool) -> dict[str, Any]:
        """Decide as the site coordinator does (:func:`hpcsched.site.decide.decide`: the
        good-citizen rules and the allocator, per partition) for this user's jobs, then carry the
        decisions out here with the resizer. An admission pass applies only shrinks, and only in a
        partition where they start a waiting job."""
        now = self.clock()
        open_jobs = self.store.open_jobs()
        records = {j.id: self.files.records(j.id) for j in open_jobs}
        described = [(j, describe(j, records[j.id], now)) for j in open_jobs]
        jobs = {rep.slurm_job_id: j for j, rep in described if rep is not None}
        reports = {rep.slurm_job_id: rep for _, rep in described if rep is not None}
        # A job with a resize under way, at the nodes its newest attempt (the resize's) asks for.
        busy = {sid: j.current.nodes if j.current else 0 for sid, j in jobs.items() if not resizable(j) and not waiting(j)}
        plan = decide(partitions(self.client.node_partitions()), self.client.queue_all(), reports, busy)
        making_room = {r.partition for r in plan.rooms if r.served} | {
            d.partition for d in plan.decisions if d.action == "start"}
        out = []
        for d in plan.decisions:
            job = jobs[d.slurm_job_id]
            entry = {"job": job.id, "name": job.name, "current_nodes": d.current, "target_nodes": d.target,
                     "action": d.action, "gain_s": d.gain_s, "cost_s": d.cost_s, "reason": in_nodes(d.reason),
                     "partition": d.partition, "applied": False, "waiting": d.current == 0,
                     "measured_nodes": measured_nodes(job, records[job.id])}
            wanted = d.executes and (not admit_only or (d.action == "shrink" and d.partition in making_room))
            if wanted and not dry_run:
                try:
                    self.resizer.resize(job, d.target, d.action)
                    entry["applied"] = True
                    fault_point("rebalance_after_resize")  # A7: one resize applied, its record and the rest not
                except HpcschedError as e:
                    entry["error"] = str(e)
            if not dry_run and (d.executes or d.current == 0):
                self.store.record_event(job.id, now, "rebalance", json.dumps(entry, default=str))
            out.append(entry)
        skipped = [{"job": j.id, "name": j.name, "reason": "not resizable: its script does not use the runtime library"}
                   for j, rep in described if rep is None and j.elastic is False and j.current is not None
                   and j.current.state is JobState.RUNNING and "-" in str(j.request.get("nodes", ""))]
        return {"dry_run": dry_run, "admit_only": admit_only, "decisions": out, "skipped": skipped,
                "partitions": [dataclasses.asdict(r) | {"foreign": len(r.foreign)} for r in plan.rooms]}
