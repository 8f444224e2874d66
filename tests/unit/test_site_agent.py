"""The personal daemon's side of site mode: what it tells the coordinator about each job, and
when it trusts the coordinator's poll over asking Slurm itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpcsched.daemon.ingest import JobFiles
from hpcsched.daemon.store import Store
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.site.agent import SiteAgent, report_item
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord

NOW = 1_760_001_000.0
# What the runtime library wrote in a real adaptive run (tests/fixtures/progress).
STEPS = [json.loads(line) for line in
         (Path(__file__).parents[1] / "fixtures" / "progress" / "adaptive.jsonl").read_text().splitlines()[:40]]


def job(nodes: str = "1-3", state: JobState = JobState.RUNNING, reason: str = "None", elastic: bool = True,
        attempts: tuple[Attempt, ...] | None = None) -> Job:
    first = Attempt(1, 1, AttemptReason.SUBMIT, state, 2, slurm_job_id=77, state_reason=reason,
                    submit_time=NOW - 300, start_time=NOW - 200 if state is JobState.RUNNING else None)
    return Job(1, "train", "alice", 1001, state, {"nodes": nodes}, NOW - 300, "/nonexistent",
               attempts=attempts or (first,), progress={"elastic": True} if elastic else None)


def test_a_running_elastic_job_is_reported_with_slurms_id_and_its_model() -> None:
    item = report_item(job(), STEPS, NOW)
    assert item is not None and item["slurm_job_id"] == 77 and item["measured"] is True
    assert item["view"]["min_nodes"] == 1 and item["view"]["max_nodes"] == 3


def test_an_unmeasured_running_job_is_reported_as_not_measured() -> None:
    item = report_item(job(), [], NOW)
    assert item is not None and item["measured"] is False


def test_jobs_the_coordinator_must_treat_as_rigid_are_not_reported() -> None:
    assert report_item(job(nodes="2"), STEPS, NOW) is None  # a fixed size
    assert report_item(job(elastic=False), STEPS, NOW) is None  # no runtime library: cannot stop when asked
    assert report_item(job(state=JobState.PENDING, reason="Dependency"), [], NOW) is None  # not waiting for nodes


def test_a_job_waiting_for_nodes_is_reported_without_measurements() -> None:
    item = report_item(job(state=JobState.PENDING, reason="Resources"), [], NOW)
    assert item is not None and item["view"]["current_nodes"] == 0


class Answers(SlurmClient):
    """Slurm as the agent's fallback sees it: counts its own polls."""

    polls: int = 0

    def queue(self) -> list[SlurmJobRecord]:
        self.polls += 1
        return []


def agent(tmp_path: Path, answer: dict[str, Any] | Exception) -> tuple[SiteAgent, Answers, Store]:
    store = Store(str(tmp_path / "store.sqlite"))
    slurm = Answers()
    a = SiteAgent(str(tmp_path / "none.sock"), store, JobFiles(store), None, slurm, clock=lambda: NOW)  # type: ignore[arg-type]

    def call(op: str, args: dict[str, Any] | None = None) -> Any:
        if isinstance(answer, Exception):
            raise answer
        return answer

    a._call = call  # type: ignore[method-assign]
    return a, slurm, store


def record(job_id: int) -> dict[str, Any]:
    return {"job_id": job_id, "name": "x", "comment": "", "slurm_state": "RUNNING", "state": "RUNNING", "reason": "None",
            "node_count": 1, "node_list": "node1", "submit_time": None, "start_time": None, "end_time": None,
            "exit_code": None, "restart_count": 0, "user": "alice", "uid": 1001, "partition": "debug", "priority": 1}


def test_the_coordinators_poll_is_used_only_when_newer_than_what_the_daemon_knows(tmp_path: Path) -> None:
    a, slurm, store = agent(tmp_path, {"time": NOW, "jobs": [record(5)]})
    assert [r.job_id for r in a.queue()] == [5] and slurm.polls == 0
    job_id = store.create_job(name="t", uid=1001, user="alice", request={"nodes": "1-2"}, nodes=2,
                              jobs_root=str(tmp_path), now=NOW)
    store.update_attempt(job_id, 1, NOW, start_time=NOW + 5)  # an attempt began after the coordinator's poll
    assert a.queue() == [] and slurm.polls == 1, "asked Slurm itself"


def test_without_the_coordinator_the_daemon_asks_slurm_itself(tmp_path: Path) -> None:
    from hpcsched.errors import DaemonNotRunning

    a, slurm, _ = agent(tmp_path, DaemonNotRunning("no coordinator"))
    a.queue()
    assert slurm.polls == 1
