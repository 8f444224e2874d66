"""The coordinator's pass over a fake Slurm: execution, audit, restart, and the socket's checks."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from site_helpers import record, view

from hpcsched.daemon.service import Caller
from hpcsched.errors import AccessDenied, ValidationError
from hpcsched.jobs.model import JobState
from hpcsched.launcher.site_decision import read_decision
from hpcsched.site.audit import AuditLog
from hpcsched.site.coordinator import Coordinator
from hpcsched.site.service import SiteService
from hpcsched.site.views import view_from_json, view_to_json
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord
from hpcsched.slurm.runner import SlurmCommandError

A, B, OP = Caller(1001, "alice"), Caller(1002, "bob"), Caller(990, "staff", operator=True)
R, P = JobState.RUNNING, JobState.PENDING


@dataclass
class FakeSlurm(SlurmClient):
    jobs: list[SlurmJobRecord] = field(default_factory=list)
    nodes: list[tuple[str, str, str]] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    refuse_signal: bool = False
    cancelled: list[int] = field(default_factory=list)
    updates: list[tuple[int, int]] = field(default_factory=list)
    shares: str = ""  # sshare's association tree; "" (no accounting): every user weighs the same
    shares_asked: int = 0

    def queue(self) -> list[SlurmJobRecord]:
        return list(self.jobs)

    def fair_share_tree(self) -> str:
        self.shares_asked += 1
        if self.shares == "down":
            raise SlurmCommandError(["sshare"], 1, "", "sshare: error: Problem talking to the database")
        return self.shares

    def node_partitions(self) -> list[tuple[str, str, str]]:
        return list(self.nodes)

    def signal_batch(self, slurm_job_id: int, signal: str = "USR1") -> None:
        if self.refuse_signal:
            raise SlurmCommandError(["scancel"], 1, "", "Access/permission denied")
        self.signals.append(slurm_job_id)

    def cancel(self, slurm_job_id: int, signal: str | None = None) -> None:
        self.cancelled.append(slurm_job_id)
        self.jobs = [r for r in self.jobs if r.job_id != slurm_job_id]

    def update_nodes(self, slurm_job_id: int, nodes: int) -> None:
        self.updates.append((slurm_job_id, nodes))
        self.jobs = [dataclasses.replace(r, node_count=nodes) if r.job_id == slurm_job_id else r for r in self.jobs]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def full_cluster() -> FakeSlurm:
    """alice's elastic job on all four nodes; bob's plain job waits for two."""
    return FakeSlurm(jobs=[record(7, 1001, R, 4, "n[1-4]"), record(8, 1002, P, 2, reason="Resources")],
                     nodes=[(f"n{i}", "p", "alloc") for i in range(1, 5)])


def make(tmp_path: Path, slurm: FakeSlurm, clock: Clock) -> tuple[Coordinator, SiteService]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    decisions = tmp_path / "decisions"
    decisions.mkdir(mode=0o755, exist_ok=True)
    c = Coordinator(slurm, AuditLog(str(state / "audit.jsonl")), str(state / "state.json"), str(decisions), clock=clock)
    return c, SiteService(c, 5.0, clock)


def report(service: SiteService, caller: Caller, slurm_job_id: int, **extra: object) -> dict[str, object]:
    item = {"slurm_job_id": slurm_job_id, "job_id": 1, "name": "train", "view": view_to_json(view()), **extra}
    result: dict[str, object] = service.handle("report", {"jobs": [item]}, caller)
    return result


def decided(tmp_path: Path, slurm: FakeSlurm, clock: Clock) -> tuple[Coordinator, SiteService]:
    """A coordinator that has seen alice's report of job 7 and run one pass."""
    c, s = make(tmp_path, slurm, clock)
    c.poll()
    report(s, A, 7)
    c.run_pass()
    return c, s


def test_a_shrink_is_written_for_the_driver_signalled_and_audited_before_and_after(tmp_path: Path) -> None:
    slurm, clock = full_cluster(), Clock()
    c, s = make(tmp_path, slurm, clock)
    c.poll()
    assert report(s, A, 7)["accepted"] == [7]
    c.run_pass()
    assert slurm.signals == [7]
    started = clock.now - 60  # the attempt the decision stops began a minute ago
    assert read_decision(c.decisions_dir, "7", started) == 2
    assert read_decision(c.decisions_dir, "7", clock.now + 1) is None  # never shrinks a later attempt
    (decided,) = c.audit.read()
    assert decided["event"] == "decided" and decided["user"] == "alice" and "Slurm job(s) 8" in decided["reason"]
    # The driver carried it out: Slurm shows the job on two nodes, bob's job runs.
    slurm.jobs = [record(7, 1001, R, 2, "n[1-2]"), record(8, 1002, R, 2, "n[3-4]")]
    clock.now += 30
    c.run_pass()
    assert [e["event"] for e in c.audit.read()] == ["decided", "done"]
    assert not os.path.exists(c.decision_path(7)) and c.state.in_flight == {}
    assert slurm.signals == [7], "no second resize"


def test_no_second_resize_while_one_is_under_way_even_after_a_restart(tmp_path: Path) -> None:
    slurm, clock = full_cluster(), Clock()
    decided(tmp_path, slurm, clock)
    # The coordinator is killed and started again; the driver has not finished the shrink yet.
    again, _ = make(tmp_path, slurm, clock)
    clock.now += 10
    again.run_pass()
    assert slurm.signals == [7]
    assert 7 in again.state.in_flight and again.state.reports[7].user == "alice"


def test_a_refused_signal_withdraws_the_decision(tmp_path: Path) -> None:
    slurm, clock = full_cluster(), Clock()
    slurm.refuse_signal = True
    c, _ = decided(tmp_path, slurm, clock)
    assert [e["event"] for e in c.audit.read()] == ["decided", "failed"]
    assert c.state.in_flight == {} and not os.path.exists(c.decision_path(7))


def test_a_shrink_not_carried_out_expires_and_may_be_decided_again(tmp_path: Path) -> None:
    slurm, clock = full_cluster(), Clock()
    c, _ = decided(tmp_path, slurm, clock)
    clock.now += 601
    c.run_pass()
    assert [e["event"] for e in c.audit.read()] == ["decided", "expired", "decided"]
    assert slurm.signals == [7, 7]


def test_grows_go_to_the_owners_agent(tmp_path: Path) -> None:
    idle = [(f"n{i}", "p", "idle") for i in (2, 3, 4)]
    slurm = FakeSlurm(jobs=[record(7, 1001, R, 1, "n1")], nodes=[("n1", "p", "alloc"), *idle])
    clock = Clock()
    c, s = make(tmp_path, slurm, clock)
    c.poll()
    report(s, A, 7)
    c.run_pass()
    assert slurm.signals == []
    assert report(s, B, 7)["actions"] == []  # bob's report is refused and gets nothing of alice's
    (offer,) = report(s, A, 7)["actions"]  # type: ignore[misc]
    assert offer["slurm_job_id"] == 7 and offer["nodes"] > 1


def test_a_report_about_another_users_job_is_refused(tmp_path: Path) -> None:
    c, s = make(tmp_path, full_cluster(), Clock())
    c.poll()
    answer = report(s, B, 7)
    assert answer["accepted"] == [] and "another user" in str(answer["refused"])
    assert 7 not in c.state.reports
    hidden = report(s, A, 7, related=[8])  # naming bob's job as a successor of one's own
    assert hidden["accepted"] == [] and "another user" in str(hidden["refused"])


@pytest.mark.parametrize("bad", [
    {"jobs": "all"},
    {"jobs": [{"slurm_job_id": "7", "view": {}}]},
    {"jobs": [{"slurm_job_id": 7, "view": {"params": {}}}]},
    {"jobs": [{"slurm_job_id": 7, "job_id": 1, "name": "x", "view": view_to_json(view()) | {"min_nodes": 0}}]},
    {"jobs": [{"slurm_job_id": 7, "job_id": 1, "name": "x", "view": view_to_json(view()) | {"remaining_work": float("nan")}}]},
    {"jobs": [{"slurm_job_id": 7, "job_id": 1, "name": "x" * 1000, "view": view_to_json(view())}]},
    {"jobs": [{"slurm_job_id": 7, "job_id": 1, "name": "x", "view": view_to_json(view()) | {"climbing": "yes"}}]},
    {"jobs": [{"slurm_job_id": 7, "job_id": 1, "name": "x", "view": view_to_json(view()) | {"never_ran": 1}}]},
    # a job that holds nodes has run: it cannot claim the newcomer's least-attained-service rank
    {"jobs": [{"slurm_job_id": 7, "job_id": 1, "name": "x", "view": view_to_json(view()) | {"current_nodes": 1,
                                                                                           "never_ran": True}}]},
])
def test_bad_reports_get_an_error_naming_the_field(tmp_path: Path, bad: dict[str, object]) -> None:
    c, s = make(tmp_path, full_cluster(), Clock())
    c.poll()
    with pytest.raises(ValidationError):
        s.handle("report", bad, A)
    assert c.state.reports == {}


def test_users_see_other_users_jobs_anonymised_and_only_operators_the_audit_log(tmp_path: Path) -> None:
    _, s = decided(tmp_path, full_cluster(), Clock())
    (row,) = s.handle("status", {}, B)["decisions"]
    assert set(row) == {"user", "partition", "action", "current", "target"} and row["user"] == "user-1"
    assert s.handle("status", {}, A)["decisions"][0]["user"] == "alice"
    assert s.handle("status", {"all_users": True}, OP)["decisions"][0]["user"] == "alice"
    with pytest.raises(AccessDenied):
        s.handle("status", {"all_users": True}, B)
    with pytest.raises(AccessDenied):
        s.handle("audit", {}, A)
    assert s.handle("audit", {}, OP)["entries"][0]["event"] == "decided"
    mine = s.handle("queue", {}, B)["jobs"]
    assert [j["job_id"] for j in mine] == [8]


def test_a_planted_decision_is_ignored_by_the_driver(tmp_path: Path) -> None:
    decisions = tmp_path / "decisions"
    decisions.mkdir(mode=0o755)
    (tmp_path / "elsewhere.json").write_text(json.dumps({"slurm_job_id": 7, "mode": "shrink", "nodes": 1, "time": 2e9}))
    os.symlink(tmp_path / "elsewhere.json", decisions / "7.json")
    assert read_decision(str(decisions), "7", 0.0) is None
    (decisions / "8.json").write_text(json.dumps({"slurm_job_id": 9, "mode": "shrink", "nodes": 1, "time": 2e9}))
    assert read_decision(str(decisions), "8", 0.0) is None  # another job's decision under this job's name
    os.chmod(decisions, 0o777)
    (decisions / "9.json").write_text(json.dumps({"slurm_job_id": 9, "mode": "shrink", "nodes": 1, "time": 2e9}))
    assert read_decision(str(decisions), "9", 0.0) is None  # anybody could have written it


def test_a_grow_the_agent_could_not_carry_out_is_closed_only_by_its_owner(tmp_path: Path) -> None:
    idle = [(f"n{i}", "p", "idle") for i in (2, 3, 4)]
    slurm, clock = FakeSlurm(jobs=[record(7, 1001, R, 1, "n1")], nodes=[("n1", "p", "alloc"), *idle]), Clock()
    c, s = decided(tmp_path, slurm, clock)
    (offer,) = report(s, A, 7)["actions"]  # type: ignore[misc]
    failed = [{"decision": offer["decision"], "ok": False, "error": "a resize request is pending"}]
    s.handle("report", {"jobs": [], "outcomes": failed}, B)  # not bob's to settle
    assert 7 in c.state.in_flight
    s.handle("report", {"jobs": [], "outcomes": failed}, A)
    assert 7 not in c.state.in_flight
    assert c.audit.read()[-1] == {"time": clock.now, "event": "failed", "decision": offer["decision"],
                                  "slurm_job_id": 7, "error": "a resize request is pending"}
    with pytest.raises(ValidationError):
        s.handle("report", {"jobs": [], "outcomes": [{"decision": 1, "ok": "yes"}]}, A)


def test_a_grow_goes_to_the_daemon_that_reported_the_job_and_survives_a_restart(tmp_path: Path) -> None:
    idle = [(f"n{i}", "p", "idle") for i in (2, 3, 4)]
    slurm, clock = FakeSlurm(jobs=[record(7, 1001, R, 1, "n1")], nodes=[("n1", "p", "alloc"), *idle]), Clock()
    c, s = make(tmp_path, slurm, clock)
    c.poll()
    item = {"slurm_job_id": 7, "job_id": 1, "name": "train", "view": view_to_json(view())}
    s.handle("report", {"jobs": [item], "store": "login1"}, A)
    c.run_pass()
    assert s.handle("report", {"jobs": [], "store": "login2"}, A)["actions"] == []  # alice's other login node
    _, s = make(tmp_path, slurm, clock)  # the coordinator restarts: the offer is kept
    (offer,) = s.handle("report", {"jobs": [item], "store": "login1"}, A)["actions"]
    assert offer["slurm_job_id"] == 7


def test_a_waiting_elastic_job_is_sized_to_its_share_by_the_coordinator_once(tmp_path: Path) -> None:
    # Nothing else runs: carol's waiting job asked for 2 of 4 idle nodes, its share is all 4.
    slurm = FakeSlurm(jobs=[record(9, 1003, P, 2, reason="Resources")], nodes=[(f"n{i}", "p", "idle") for i in range(1, 5)])
    clock = Clock()
    c, s = make(tmp_path, slurm, clock)
    c.poll()
    carol = Caller(1003, "carol")
    assert report(s, carol, 9, view=view_to_json(view(max_nodes=4)))["accepted"] == [9]
    c.run_pass()
    assert slurm.updates == [(9, 4)]
    assert [(e["event"], e.get("action"), e.get("target")) for e in c.audit.read()] == [
        ("decided", "start", 4), ("done", "start", 4)]
    clock.now += 10
    c.run_pass()
    assert slurm.updates == [(9, 4)], "sized once: Slurm now shows the job at its share"


def test_a_view_says_whether_the_job_is_climbing_and_older_agents_say_nothing() -> None:
    """The flag that spares a climb the settle term crosses the socket both ways; a report from
    an agent that predates it (no field) reads as not climbing, the damped, cautious reading."""
    climbing = dataclasses.replace(view(), climbing=True)
    assert view_from_json("7", view_to_json(climbing), "alice").climbing
    old = {k: v for k, v in view_to_json(climbing).items() if k != "climbing"}
    assert not view_from_json("7", old, "alice").climbing


def test_a_view_says_whether_a_waiting_job_never_ran_and_older_agents_say_it_did() -> None:
    """Older agents send no field: read as a job that ran, which claims no priority."""
    new = dataclasses.replace(view(), current_gpus=0, never_ran=True)
    assert view_from_json("7", view_to_json(new), "alice").never_ran
    old = {k: v for k, v in view_to_json(new).items() if k != "never_ran"}
    assert not view_from_json("7", old, "alice").never_ran


def growing(tmp_path: Path) -> tuple[FakeSlurm, Clock, Coordinator, SiteService, dict[str, object]]:
    """Alice's job 7 runs on n1 of four idle-but-one nodes; the coordinator offers her agent a grow."""
    idle = [(f"n{i}", "p", "idle") for i in (2, 3, 4)]
    slurm, clock = FakeSlurm(jobs=[record(7, 1001, R, 1, "n1")], nodes=[("n1", "p", "alloc"), *idle]), Clock()
    c, s = make(tmp_path, slurm, clock)
    c.poll()
    report(s, A, 7, job_id=3)
    c.run_pass()
    return slurm, clock, c, s, {"slurm_job_id": 7, "job_id": 3, "name": "train", "view": view_to_json(view())}


def tagged(r: SlurmJobRecord, comment: str) -> SlurmJobRecord:
    return dataclasses.replace(r, comment=comment)


def test_a_grow_whose_allocation_waits_for_nodes_others_took_is_given_up(tmp_path: Path) -> None:
    slurm, clock, c, s, item = growing(tmp_path)
    (offer,) = s.handle("report", {"jobs": [item]}, A)["actions"]
    # Her agent submits the 4-node allocation; bob's plain jobs take three nodes meanwhile. A job
    # of bob's carrying alice's tag is not hers and is never cancelled.
    slurm.jobs += [tagged(record(20, 1001, P, offer["nodes"], reason="Resources"), "hpcsched::3:a2"),
                   tagged(record(21, 1002, P, 4, reason="Resources"), "hpcsched::3:a2"),
                   record(22, 1002, R, 3, "n[2-4]")]
    slurm.nodes = [(f"n{i}", "p", "alloc") for i in range(1, 5)]
    clock.now += 200
    c.run_pass()
    assert slurm.cancelled == [] and 7 in c.state.in_flight  # the grow may still start
    clock.now += 101
    c.run_pass()
    assert slurm.cancelled == [20]
    events = [e for e in c.audit.read() if e.get("slurm_job_id") == 7]
    assert [e["event"] for e in events][-2:] == ["abandoning", "abandoned"]
    assert events[-2]["cancel"] == [20] and "trains on at 1 node" in events[-2]["reason"]
    assert 7 not in c.state.in_flight  # decided again from now on


def test_a_grow_offer_nobody_took_up_is_withdrawn(tmp_path: Path) -> None:
    # Alice's daemon is down: nobody submits the grow. It expires, and a daemon that comes back
    # later is not handed a decision from long ago.
    slurm, clock, c, s, item = growing(tmp_path)
    slurm.jobs.append(record(22, 1002, R, 3, "n[2-4]"))
    slurm.nodes = [(f"n{i}", "p", "alloc") for i in range(1, 5)]
    clock.now += 301
    c.run_pass()
    assert [e["event"] for e in c.audit.read()][-1] == "expired" and slurm.cancelled == []
    assert s.handle("report", {"jobs": [item]}, A)["actions"] == []


def test_the_time_a_grow_may_stall_is_the_coordinators_option(tmp_path: Path) -> None:
    """``hpcsched site coordinator --grow-stall 60``: the untaken offer expires after a minute."""
    slurm, clock, c, _, _ = growing(tmp_path)
    c.grow_stall_s = 60.0
    slurm.jobs.append(record(22, 1002, R, 3, "n[2-4]"))
    slurm.nodes = [(f"n{i}", "p", "alloc") for i in range(1, 5)]
    clock.now += 59
    c.run_pass()
    assert 7 in c.state.in_flight
    clock.now += 2
    c.run_pass()
    assert [e["event"] for e in c.audit.read()][-1] == "expired"


def test_a_grow_whose_allocation_runs_is_left_to_finish_its_hand_over(tmp_path: Path) -> None:
    slurm, clock, c, s, item = growing(tmp_path)
    (offer,) = s.handle("report", {"jobs": [item]}, A)["actions"]
    slurm.jobs.append(tagged(record(20, 1001, R, offer["nodes"], "n[1-4]"), "hpcsched::3:a2"))
    clock.now += 301
    c.run_pass()
    assert slurm.cancelled == [] and 7 in c.state.in_flight


def test_a_grow_carried_out_is_audited_done_with_the_allocation_the_job_runs_in_now(tmp_path: Path) -> None:
    slurm, clock, c, s, item = growing(tmp_path)
    (offer,) = s.handle("report", {"jobs": [item]}, A)["actions"]
    # The hand-over: the 4-node allocation runs, the old 1-node one has ended.
    slurm.jobs = [tagged(record(20, 1001, R, offer["nodes"], "n[1-4]"), "hpcsched::3:a2")]
    clock.now += 30
    c.run_pass()
    done = [e for e in c.audit.read() if e["event"] in ("done", "ended")]
    assert [(e["event"], e["successor"], e["nodes_now"]) for e in done] == [("done", 20, offer["nodes"])]


def test_a_job_that_ends_before_its_grow_is_audited_ended_not_done(tmp_path: Path) -> None:
    slurm, clock, c, s, item = growing(tmp_path)
    s.handle("report", {"jobs": [item]}, A)
    slurm.jobs = []  # it finished training at its size; no new allocation ever ran
    clock.now += 30
    c.run_pass()
    (closed,) = [e for e in c.audit.read() if e["event"] in ("done", "ended")]
    assert closed["event"] == "ended" and "successor" not in closed and 7 not in c.state.in_flight
