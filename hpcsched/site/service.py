"""The coordinator's socket operations, with access checks (the socket is a trust boundary).

Anybody on the login node may connect; who is calling comes from the kernel (SO_PEERCRED). A
report about a Slurm job is accepted only from the uid that owns that job in Slurm's own view
(the coordinator's last ``squeue``); a user sees their own jobs in full and other users' elastic
jobs anonymised; the audit log and ``--all-users`` views are for operators (the site's list, or
Slurm's AdminLevel Operator/Administrator).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

from hpcsched import __version__
from hpcsched.daemon.service import Caller
from hpcsched.errors import AccessDenied, ValidationError
from hpcsched.slurm.parse import SlurmJobRecord

from .coordinator import Coordinator
from .decide import Reported, SitePlan, SizeDecision
from .views import view_from_json

OPS = frozenset({"ping", "hello", "report", "queue", "status", "plan", "audit"})
MAX_REPORTED = 10_000
NAME_LEN = 200


def _id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise ValidationError(field, f"expected a Slurm job id, got {value!r}")
    return value


class SiteService:
    def __init__(self, coordinator: Coordinator, interval: float, clock: Callable[[], float]) -> None:
        self.coordinator = coordinator
        self.interval = interval
        self.clock = clock

    def handle(self, op: str, args: dict[str, Any], caller: Caller) -> Any:
        handler = getattr(self, f"op_{op}")
        return handler(args, caller)

    def op_ping(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        h = self.coordinator.health
        return {"pid": os.getpid(), "version": __version__, "passes": h.passes, "failures": h.failures,
                "last_pass": h.last_pass, "last_error": h.last_error if caller.operator else "",
                "operator": caller.operator}

    def op_hello(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return {"decisions_dir": self.coordinator.decisions_dir, "interval": self.interval, "version": __version__}

    # --- agents -----------------------------------------------------------------------------

    def op_report(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """An agent's elastic jobs: each one checked against Slurm's owner before it counts."""
        jobs = args.get("jobs")
        if not isinstance(jobs, list) or len(jobs) > MAX_REPORTED:
            raise ValidationError("jobs", f"expected a list of at most {MAX_REPORTED} jobs")
        store = args.get("store", "")
        if not isinstance(store, str) or len(store) > 64:
            raise ValidationError("store", "expected the reporting daemon's store id (at most 64 characters)")
        snap = self.coordinator.snapshot
        owners = {r.job_id: r.uid for r in snap.queue} if snap is not None else {}
        accepted, refused = [], []
        reports = []
        for i, item in enumerate(jobs):
            if not isinstance(item, dict):
                raise ValidationError(f"jobs[{i}]", "expected an object")
            sid = _id(item.get("slurm_job_id"), f"jobs[{i}].slurm_job_id")
            related = item.get("related", [])
            if not isinstance(related, list) or len(related) > 16:
                raise ValidationError(f"jobs[{i}].related", "expected a list of at most 16 Slurm job ids")
            related_ids = tuple(_id(x, f"jobs[{i}].related") for x in related)
            why = self._not_theirs(caller.uid, (sid, *related_ids), owners)
            if why:
                refused.append({"slurm_job_id": sid, "why": why})
                continue
            name = item.get("name", "")
            job_id = item.get("job_id", 0)
            if not isinstance(name, str) or len(name) > NAME_LEN or isinstance(job_id, bool) or not isinstance(job_id, int):
                raise ValidationError(f"jobs[{i}]", "name must be a short string and job_id a number")
            measured, sizes = item.get("measured", True), item.get("sizes_seen", 2)
            if not isinstance(measured, bool):
                raise ValidationError(f"jobs[{i}].measured", f"{measured!r} is not true or false")
            if isinstance(sizes, bool) or not isinstance(sizes, int) or not 0 <= sizes <= 100_000:
                raise ValidationError(f"jobs[{i}].sizes_seen", f"{sizes!r} is not a count of node counts")
            view = view_from_json(str(sid), item.get("view"), caller.user)
            reports.append(Reported(sid, caller.uid, caller.user, job_id, name, view, related_ids, self.clock(), measured,
                                    store, sizes))
            accepted.append(sid)
        outcomes = _outcomes(args.get("outcomes", []))
        with self.coordinator.lock:
            for rep in reports:
                self.coordinator.state.reports[rep.slurm_job_id] = rep
            for decision, ok, error in outcomes:
                self.coordinator.settle_offer(caller.uid, decision, ok, error)
            actions = self.coordinator.state.offers.pop((caller.uid, store), [])
        return {"accepted": accepted, "refused": refused, "actions": actions,
                "decisions_dir": self.coordinator.decisions_dir, "interval": self.interval}

    @staticmethod
    def _not_theirs(uid: int, ids: Iterable[int], owners: dict[int, int | None]) -> str:
        for sid in ids:
            if sid not in owners:
                return f"Slurm job {sid} is not in the coordinator's view of the queue yet"
            if owners[sid] != uid:
                return f"Slurm job {sid} belongs to another user"
        return ""

    def op_queue(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """The caller's own jobs from the coordinator's last poll (an agent's poll of Slurm)."""
        snap = self.coordinator.snapshot
        if snap is None:
            return {"time": None, "jobs": []}
        mine = [record_to_json(r) for r in snap.queue if r.uid == caller.uid]
        return {"time": snap.time, "jobs": mine}

    # --- people -----------------------------------------------------------------------------

    def op_status(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        all_users = self._all_users(args, caller)
        plan = self.coordinator.last_plan
        return self._view(plan, caller, all_users)

    def op_plan(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """What a pass would decide now (``rebalance --dry-run``); executes nothing."""
        all_users = self._all_users(args, caller)
        return self._view(self.coordinator.run_pass(dry_run=True), caller, all_users)

    def op_audit(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        if not caller.operator:
            raise AccessDenied(f"the audit log is for operators; {caller.user} is not one")
        since, limit = args.get("since", 0), args.get("limit", 1000)
        if isinstance(since, bool) or not isinstance(since, (int, float)) or isinstance(limit, bool) \
                or not isinstance(limit, int) or not 0 < limit <= 100_000:
            raise ValidationError("since/limit", "since must be a time and limit a count up to 100000")
        return {"entries": self.coordinator.audit.read(float(since), limit)}

    @staticmethod
    def _all_users(args: dict[str, Any], caller: Caller) -> bool:
        all_users = args.get("all_users", False)
        if not isinstance(all_users, bool):
            raise ValidationError("all_users", f"{all_users!r} is not true or false")
        if all_users and not caller.operator:
            raise AccessDenied(f"--all-users is for operators; {caller.user} is not one")
        return all_users

    def _view(self, plan: SitePlan | None, caller: Caller, all_users: bool) -> dict[str, Any]:
        decisions = plan.decisions if plan is not None else ()
        names: dict[int, str] = {}
        rows = []
        for d in decisions:
            if all_users or d.uid == caller.uid:
                rows.append(d.as_dict())
            else:
                rows.append(anonymised(d, names.setdefault(d.uid, f"user-{len(names) + 1}")))
        rooms = [dataclasses.asdict(r) | {"foreign": len(r.foreign)} for r in plan.rooms] if plan else []
        weights = self.coordinator.weights
        shown = dict(weights) if all_users else {u: w for u, w in weights.items() if u == caller.user}
        return {"time": self.coordinator.health.last_pass, "decisions": rows, "partitions": rooms,
                "weights": {u: round(w, 6) for u, w in sorted(shown.items())}}


def _outcomes(raw: Any) -> list[tuple[str, bool, str]]:
    """What an agent says became of the grows it was offered: (decision id, carried out, error)."""
    if not isinstance(raw, list) or len(raw) > 100:
        raise ValidationError("outcomes", "expected a list of at most 100 outcomes")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("decision"), str) or len(item["decision"]) > 64 \
                or not isinstance(item.get("ok"), bool) or not isinstance(item.get("error", ""), str):
            raise ValidationError(f"outcomes[{i}]", "expected {decision: text, ok: true|false, error: text}")
        out.append((item["decision"], item["ok"], item.get("error", "")[:500]))
    return out


def anonymised(d: SizeDecision, alias: str) -> dict[str, Any]:
    """Another user's elastic job as an ordinary user sees it: its size and what happens to it."""
    return {"user": alias, "partition": d.partition, "action": d.action, "current": d.current, "target": d.target}


def record_to_json(r: SlurmJobRecord) -> dict[str, Any]:
    out = dataclasses.asdict(r)
    out["state"] = r.state.value
    return out
