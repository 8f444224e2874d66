"""What the coordinator keeps across restarts (``state.json`` in its private state directory):
the agents' last reports, so a job whose agent is down is still sized, and the resizes under way,
so a restarted coordinator neither forgets nor repeats one.

Written atomically (a temporary file renamed over it) after every pass that changed it; read with
the same checks as a report (a damaged file is set aside and the coordinator starts empty: the
agents report again within a cycle).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from hpcsched.daemon import statedir
from hpcsched.errors import HpcschedError

from .decide import Reported
from .views import view_from_json, view_to_json

log = logging.getLogger(__name__)


@dataclass
class InFlight:
    """A resize the coordinator started and has not yet seen carried out."""

    slurm_job_id: int
    action: str  # shrink | grow
    current: int
    target: int
    since: float
    decision_id: str

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class CoordinatorState:
    reports: dict[int, Reported] = field(default_factory=dict)
    in_flight: dict[int, InFlight] = field(default_factory=dict)
    # (uid, store) -> grows offered to the agent that reported the job, until its next report
    offers: dict[tuple[int, str], list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "reports": [reported_to_json(r) for r in self.reports.values()],
            "in_flight": [f.as_dict() for f in self.in_flight.values()],
            "offers": [{"uid": uid, "store": store, "actions": actions} for (uid, store), actions in self.offers.items()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CoordinatorState:
        state = cls()
        for item in data.get("reports", []):
            rep = reported_from_json(item)
            state.reports[rep.slurm_job_id] = rep
        for item in data.get("in_flight", []):
            f = InFlight(int(item["slurm_job_id"]), str(item["action"]), int(item["current"]), int(item["target"]),
                         float(item["since"]), str(item["decision_id"]))
            state.in_flight[f.slurm_job_id] = f
        for item in data.get("offers", []):
            state.offers[(int(item["uid"]), str(item["store"]))] = [dict(a) for a in item["actions"]]
        return state


def reported_to_json(r: Reported) -> dict[str, Any]:
    return {"slurm_job_id": r.slurm_job_id, "uid": r.uid, "user": r.user, "job_id": r.job_id, "name": r.name,
            "view": view_to_json(r.view), "related": list(r.related), "received": r.received, "measured": r.measured,
            "store": r.store, "sizes_seen": r.sizes_seen}


def reported_from_json(item: dict[str, Any]) -> Reported:
    sid = int(item["slurm_job_id"])
    return Reported(sid, int(item["uid"]), str(item["user"]), int(item["job_id"]), str(item["name"]),
                    view_from_json(str(sid), item["view"], str(item["user"])),
                    tuple(int(x) for x in item.get("related", [])), float(item.get("received") or 0),
                    bool(item.get("measured", True)), str(item.get("store", "")), int(item.get("sizes_seen", 2)))


def load(path: str) -> CoordinatorState:
    try:
        fd = statedir.open_private_file(path, os.O_RDONLY)
    except statedir.UnsafePath:
        raise
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        return CoordinatorState()
    try:
        return CoordinatorState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, HpcschedError) as e:
        aside = f"{path}.damaged"
        os.replace(path, aside)
        log.error("coordinator state %s is damaged (%s): set aside as %s, starting empty", path, e, aside)
        return CoordinatorState()


def save(path: str, state: CoordinatorState) -> None:
    tmp = f"{path}.tmp"
    statedir.refuse_link(tmp)
    fd = statedir.open_private_file(tmp, os.O_WRONLY)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.ftruncate(f.fileno(), 0)
        json.dump(state.to_json(), f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
