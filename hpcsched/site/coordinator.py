"""The coordinator's pass: poll Slurm once for everybody, decide, execute, audit.

One ``squeue --json`` of all users and one ``sinfo`` per pass, whatever the number of users or
jobs; agents get their users' job states from this poll (:mod:`.service`, ``queue``).

Who executes a decision (docs/site.md):

- **shrink**: the job's own batch driver, which runs as the user inside the allocation. The
  coordinator writes the decision to ``<decisions dir>/<Slurm job id>.json`` (a directory on the
  shared file system that only the service account may write) and signals the batch step with
  its Operator right (``scancel --signal=USR1 --batch``). The ranks checkpoint, the driver reads
  the decision, releases nodes with ``scontrol update NumNodes`` and goes on, in place. No user
  daemon is needed: a decision takes effect while the user's login node is down.
- **grow**: the user's agent (make-before-break needs a new allocation submitted as the user). The
  coordinator offers it in its answer to the agent's next report; an agent that is down grows
  nothing, which harms nobody. A grow not carried out within ``GROW_STALL_S`` (``--grow-stall``) is given up: the
  offer is withdrawn, and a new allocation still waiting in the queue (for nodes somebody else
  took since) is cancelled with the coordinator's Operator right; the job trains on at its size,
  and its user's daemon withdraws the grow (:func:`hpcsched.daemon.reconcile.withdrawn_grow`).
- **start at another size**: the coordinator, with its Operator right, changes the node count of
  a waiting elastic job (``scontrol update NumNodes``) to its fair size before Slurm starts it;
  nothing runs yet, so nothing needs the user's daemon or driver.

Every action is written to the audit log before (``decided``, ``abandoning``) and after (``done``,
``failed``, ``expired``, ``abandoned``). A resize under way is kept in the state file, so a coordinator killed mid-pass
neither forgets nor repeats it; a job with one under way is not resized again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from hpcsched.allocator import HPCSCHED, AllocatorPolicy
from hpcsched.daemon import statedir
from hpcsched.daemon.faults import fault_point
from hpcsched.jobs.model import JobState
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord
from hpcsched.slurm.runner import SlurmCommandError

from . import state as site_state
from .audit import AuditLog
from .citizen import Partition, partitions
from .decide import Reported, SitePlan, SizeDecision, decide, successors_of
from .shares import SharesParseError, parse_sshare, user_weights

log = logging.getLogger(__name__)
SHRINK_TIMEOUT_S = 600.0  # checkpoint + stop + restart in place; after this the decision is dropped
# Grows go only into idle nodes: a new allocation not started this long after the decision waits
# for nodes somebody else took, and its job (counted busy) would hold every grow of its partition.
GROW_STALL_S = 300.0
SHARES_TTL_S = 300.0  # how long Slurm's fair-share tree is used before it is asked again


@dataclass(frozen=True)
class Snapshot:
    time: float
    queue: tuple[SlurmJobRecord, ...]
    partitions: dict[str, Partition]

    def record(self, slurm_job_id: int) -> SlurmJobRecord | None:
        return next((r for r in self.queue if r.job_id == slurm_job_id), None)


@dataclass
class Health:
    started: float
    passes: int = 0
    failures: int = 0
    last_pass: float | None = None
    last_error: str = ""


@dataclass
class Coordinator:
    client: SlurmClient
    audit: AuditLog
    state_path: str
    decisions_dir: str
    clock: Callable[[], float] = time.time
    policy: AllocatorPolicy = HPCSCHED
    lock: threading.Lock = field(default_factory=threading.Lock)
    snapshot: Snapshot | None = None
    last_plan: SitePlan | None = None
    fresh_s: float = 5.0  # a dry run within this long of the last poll reuses it (users cannot drive Slurm's load)
    shares_ttl_s: float = SHARES_TTL_S
    grow_stall_s: float = GROW_STALL_S  # a grow not carried out within this long is given up
    weights: dict[str, float] = field(default_factory=dict)  # users' fair-share weights (.shares)
    weights_at: float | None = None

    def __post_init__(self) -> None:
        self.state = site_state.load(self.state_path)
        self.health = Health(started=self.clock())

    # --- one pass ---------------------------------------------------------------------------

    def poll(self) -> Snapshot:
        snap = Snapshot(self.clock(), tuple(self.client.queue()), partitions(self.client.node_partitions()))
        self.snapshot = snap
        return snap

    def run_pass(self, dry_run: bool = False) -> SitePlan:
        """Poll, decide and (unless ``dry_run``) execute. Raises what Slurm raised; nothing is
        executed from a failed poll."""
        recent = self.snapshot is not None and self.clock() - self.snapshot.time < self.fresh_s
        snap = self.snapshot if dry_run and recent and self.snapshot is not None else self.poll()
        with self.lock:
            if not dry_run:
                self._follow_up(snap)
            busy = {sid: f.target for sid, f in self.state.in_flight.items()}
            plan = decide(snap.partitions, snap.queue, self.live_reports(snap), busy, self.policy, now=snap.time,
                          weights=self.user_weights())
            if not dry_run:
                self.last_plan = plan
                for d in plan.decisions:
                    if d.executes:
                        self._execute(d, snap)
                    elif d.sizes_pending:
                        self._size_pending(d, snap)
                site_state.save(self.state_path, self.state)
        return plan

    def user_weights(self) -> dict[str, float]:
        """Users' fair-share weights from Slurm's shares (one ``sshare`` every ``shares_ttl_s``).
        When Slurm cannot tell (no accounting, an error), the last known ones, or all equal."""
        now = self.clock()
        if self.weights_at is None or now - self.weights_at >= self.shares_ttl_s:
            self.weights_at = now
            try:
                self.weights = user_weights(parse_sshare(self.client.fair_share_tree()))
            except (SlurmCommandError, SharesParseError) as e:
                log.warning("fair-share weights unknown (every user weighs the same): %s", e)
        return self.weights

    def live_reports(self, snap: Snapshot) -> dict[int, Reported]:
        ids = {r.job_id for r in snap.queue if not r.state.is_final}
        return {sid: rep for sid, rep in self.state.reports.items() if sid in ids}

    def _follow_up(self, snap: Snapshot) -> None:
        """Close resizes carried out, ended or overdue, and forget reports of ended jobs."""
        now = snap.time
        for sid, f in list(self.state.in_flight.items()):
            record = snap.record(sid)
            outcome, successor = None, None
            if record is None or record.state.is_final:
                successor = self._grown_into(f, snap) if f.action == "grow" else None
                outcome = "done" if successor is not None else "ended"
            elif f.action == "shrink" and record.state is JobState.RUNNING and record.node_count <= f.target:
                outcome = "done"
            elif f.action == "shrink" and now - f.since > SHRINK_TIMEOUT_S:
                outcome = "expired"
            elif f.action == "grow" and now - f.since > self.grow_stall_s:
                outcome = self._give_up_grow(f, snap)
            if outcome is not None:
                del self.state.in_flight[sid]
                self._remove_decision(sid)
                now_on = successor or record  # a grow carried out: the new allocation the job runs in
                self.audit.write({"time": now, "event": outcome, "decision": f.decision_id, "slurm_job_id": sid,
                                  "action": f.action, "target": f.target,
                                  "nodes_now": now_on.node_count if now_on is not None else None,
                                  **({"successor": successor.job_id} if successor is not None else {})})
        live = {r.job_id for r in snap.queue if not r.state.is_final}
        for sid in [s for s in self.state.reports if s not in live and s not in self.state.in_flight]:
            if snap.time - self.state.reports[sid].received > 300:  # not in the queue for a while: ended
                del self.state.reports[sid]

    def _grown_into(self, f: site_state.InFlight, snap: Snapshot) -> SlurmJobRecord | None:
        """The running new allocation a grown job handed over to (its tag, its owner), or None
        when the job ended without one (it finished, or was cancelled, before the grow)."""
        rep = self.state.reports.get(f.slurm_job_id)
        if rep is None:
            return None
        ids = successors_of(rep, snap.queue, ()) - {f.slurm_job_id}
        running = [r for r in snap.queue if r.job_id in ids and r.uid == rep.uid and r.state is JobState.RUNNING]
        return max(running, key=lambda r: r.job_id, default=None)

    def _give_up_grow(self, f: site_state.InFlight, snap: Snapshot) -> str | None:
        """A grow not carried out within ``grow_stall_s``: "expired" (the offer withdrawn; no new
        allocation was submitted), "abandoned" (its new allocation, still waiting, cancelled), or
        None while that allocation runs (the hand-over is under way) or could not be cancelled."""
        rep = self.state.reports.get(f.slurm_job_id)
        ids = successors_of(rep, snap.queue, self.state.reports.keys()) if rep is not None else set()
        allocations = [r for r in snap.queue if r.job_id in ids and rep is not None and r.uid == rep.uid]
        if any(r.state is JobState.RUNNING for r in allocations):
            return None
        for offers in self.state.offers.values():
            offers[:] = [o for o in offers if o.get("decision") != f.decision_id]
        waiting = [r.job_id for r in allocations if r.state is JobState.PENDING]
        if not waiting:
            return "expired"
        waited = snap.time - f.since
        self.audit.write({"time": snap.time, "event": "abandoning", "decision": f.decision_id,
                          "slurm_job_id": f.slurm_job_id, "cancel": waiting,
                          "reason": f"its new allocation waited {waited:.0f} s for nodes others hold now; "
                                    f"the job trains on at {f.current} node(s)"})
        try:
            for sid in waiting:
                self.client.cancel(sid)
        except SlurmCommandError as e:
            self.audit.write({"time": self.clock(), "event": "failed", "decision": f.decision_id,
                              "slurm_job_id": f.slurm_job_id, "error": str(e)})
            log.warning("grow of Slurm job %s not given up: %s", f.slurm_job_id, e)
            return None
        return "abandoned"

    def _execute(self, d: SizeDecision, snap: Snapshot) -> None:
        decision_id = uuid.uuid4().hex[:12]
        entry = {"time": snap.time, "event": "decided", "decision": decision_id, **d.as_dict()}
        self.audit.write(entry)
        self.state.in_flight[d.slurm_job_id] = site_state.InFlight(d.slurm_job_id, d.action, d.current, d.target,
                                                                   snap.time, decision_id)
        if d.action == "grow":
            store = rep.store if (rep := self.state.reports.get(d.slurm_job_id)) is not None else ""
            self.state.offers.setdefault((d.uid, store), []).append({"slurm_job_id": d.slurm_job_id, "nodes": d.target,
                                                      "decision": decision_id, "reason": d.reason})
            return
        try:
            self._write_decision(d, decision_id, snap.time)
            self.client.signal_batch(d.slurm_job_id, "USR1")
            fault_point("site_after_signal")  # tests: killed mid-pass, the resize started and not yet saved
        except (OSError, SlurmCommandError) as e:
            del self.state.in_flight[d.slurm_job_id]
            self._remove_decision(d.slurm_job_id)
            self.audit.write({"time": self.clock(), "event": "failed", "decision": decision_id,
                              "slurm_job_id": d.slurm_job_id, "error": str(e)})
            log.warning("shrink of Slurm job %s not carried out: %s", d.slurm_job_id, e)

    def _size_pending(self, d: SizeDecision, snap: Snapshot) -> None:
        """A waiting job's node count changed to its fair size, at once (audited before and after)."""
        decision_id = uuid.uuid4().hex[:12]
        self.audit.write({"time": snap.time, "event": "decided", "decision": decision_id, **d.as_dict()})
        try:
            self.client.update_nodes(d.slurm_job_id, d.target)
        except SlurmCommandError as e:
            self.audit.write({"time": self.clock(), "event": "failed", "decision": decision_id,
                              "slurm_job_id": d.slurm_job_id, "error": str(e)})
            log.warning("waiting Slurm job %s not sized to %d nodes: %s", d.slurm_job_id, d.target, e)
            return
        self.audit.write({"time": self.clock(), "event": "done", "decision": decision_id,
                          "slurm_job_id": d.slurm_job_id, "action": d.action, "target": d.target})

    def settle_offer(self, uid: int, decision_id: str, ok: bool, error: str) -> None:
        """An agent's word on a grow it was offered (call with ``lock`` held): a grow it could not
        carry out is closed at once, so the job may be decided again next pass."""
        f = next((f for f in self.state.in_flight.values() if f.decision_id == decision_id and f.action == "grow"), None)
        rep = self.state.reports.get(f.slurm_job_id) if f is not None else None
        if f is None or rep is None or rep.uid != uid:
            return  # not an offer to this user, or already settled
        if ok:
            self.audit.write({"time": self.clock(), "event": "submitted", "decision": decision_id,
                              "slurm_job_id": f.slurm_job_id})
            return
        del self.state.in_flight[f.slurm_job_id]
        self.audit.write({"time": self.clock(), "event": "failed", "decision": decision_id,
                          "slurm_job_id": f.slurm_job_id, "error": error})

    # --- what the jobs' drivers read --------------------------------------------------------

    def decision_path(self, slurm_job_id: int) -> str:
        return os.path.join(self.decisions_dir, f"{int(slurm_job_id)}.json")

    def _write_decision(self, d: SizeDecision, decision_id: str, now: float) -> None:
        path = self.decision_path(d.slurm_job_id)
        tmp = f"{path}.tmp"
        statedir.refuse_link(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"slurm_job_id": d.slurm_job_id, "mode": d.action, "nodes": d.target, "time": now,
                       "decision": decision_id}, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def _remove_decision(self, slurm_job_id: int) -> None:
        try:
            os.unlink(self.decision_path(slurm_job_id))
        except FileNotFoundError:
            pass

    # --- the loop ---------------------------------------------------------------------------

    def loop(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                self.run_pass()
                self.health.passes += 1
                self.health.failures = 0
                self.health.last_pass = self.clock()
            except Exception as e:  # the loop outlives Slurm outages and bugs; each failure is logged
                self.health.failures += 1
                self.health.last_error = f"{type(e).__name__}: {e}"
                log.exception("coordinator pass failed (%d in a row)", self.health.failures)
            stop.wait(interval if not self.health.failures else min(60.0, interval * 2 ** self.health.failures))
