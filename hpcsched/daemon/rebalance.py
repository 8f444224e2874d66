"""One rebalance pass: read the cluster, the elastic jobs and hpcsched's jobs waiting in the queue,
decide with the allocator, apply the resizes, record every decision. Run by ``hpcsched
rebalance`` (from cron), and by the daemon when one of its jobs waits for nodes: then as an
admission pass, which applies only the shrinks that make room for the waiting jobs the allocator
admits (:func:`hpcsched.allocator.admission`; the allocator admits a newcomer by shrinking others
only when that saves more completion time than it costs), and grows nothing: an arrival restarts no more jobs than
it needs.
A waiting job the allocator admits is left to Slurm, which starts it on the nodes set free.

Never two passes at once: an exclusive lock on local disk (``rebalance.lock`` in the state
directory); a second pass reports busy and changes nothing (H2), or first waits a while for the
lock when asked to (``hpcsched rebalance --wait``, as the cron entry does). A pass that dies half way
leaves no job stranded: each resize it started is an attempt committed before its signal, and
the daemon re-sends the signal of any resize request still pending when it starts (A7).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hpcsched.allocator import HPCSCHED, admission, allocate
from hpcsched.daemon.faults import fault_point
from hpcsched.daemon.ingest import JobFiles
from hpcsched.daemon.rebalance_plan import cluster_view, elastic_job, queue_wait_estimate, waiting, waiting_job
from hpcsched.daemon.resize import Resizer, waiting_successor
from hpcsched.daemon.store import Store
from hpcsched.errors import HpcschedError
from hpcsched.jobs.model import Job, JobState
from hpcsched.slurm import hostlist
from hpcsched.slurm.client import SlurmClient

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.2


class RebalanceBusy(HpcschedError):
    pass


@contextmanager
def pass_lock(state_dir: str, wait_s: float = 0.0) -> Iterator[None]:
    """The one-pass-at-a-time lock; a pass that finds it taken waits up to ``wait_s`` for it."""
    path = os.path.join(state_dir, "rebalance.lock")
    deadline = time.monotonic() + wait_s
    with open(path, "a+") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" after waiting {wait_s:g} s" if wait_s else ""
                    raise RebalanceBusy(f"rebalance busy: another pass is running{waited}; this one changed nothing") from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
        now = self.clock()
        open_jobs = self.store.open_jobs()
        jobs = {str(j.id): j for j in open_jobs if resizable(j)}
        queued = {str(j.id): j for j in open_jobs if waiting(j)}
        states = self.client.node_states()
        ours = [h for j in jobs.values() if j.current for h in hostlist.expand(j.current.node_list)]
        cluster, _ = cluster_view(states, ours)
        idle = sum(1 for s in states.values() if s.rstrip("*~#!%$@^-") == "idle")
        wait = queue_wait_estimate(idle, self.client.pending_jobs())
        views = [v for v in (elastic_job(j, list(self.files.records(j.id)), now, wait) for j in jobs.values()) if v]
        if views:  # without a running elastic job there is nobody to shrink or grow
            views += [waiting_job(j, list(self.files.records(j.id)), now, wait) for j in queued.values()]
        allocation = allocate(cluster, views, HPCSCHED) if views else None
        decisions = allocation.decisions if allocation else ()
        shrinks = admission(allocation, idle) if allocation else {}
        out = []
        for d in decisions:
            job = jobs.get(d.key) or queued[d.key]
            entry = {"job": job.id, "name": job.name, **d.as_dict(), "applied": False, "waiting": d.key in queued}
            entry["current_nodes"], entry["target_nodes"] = d.current_gpus, d.target_gpus
            wanted = d.key in jobs and d.changed and (not admit_only or d.key in shrinks)
            if wanted and not dry_run:
                try:
                    self.resizer.resize(job, d.target_gpus)
                    entry["applied"] = True
                    fault_point("rebalance_after_resize")  # A7: one resize applied, its record and the rest not
                except HpcschedError as e:
                    entry["error"] = str(e)
            if not dry_run:
                self.store.record_event(job.id, now, "rebalance", json.dumps(entry, default=str))
            out.append(entry)
        skipped = [{"job": j.id, "name": j.name, "reason": "not enough measurements yet"}
                   for key, j in jobs.items() if key not in {v.key for v in views}]
        return {"dry_run": dry_run, "admit_only": admit_only, "decisions": out, "skipped": skipped,
                "idle_nodes": idle, "queue_wait_s": wait}
