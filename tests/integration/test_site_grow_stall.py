"""Site mode on the real cluster: a grow whose new allocation cannot start is given up
(docs/site.md, "Giving up a grow"). The coordinator runs with ``--grow-stall 30`` here (300 s by
default) so that the test does not wait five minutes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from conftest import UserSession, copy_example
from test_elastic import DIGITS, running_attempt, steps_of_attempt, wait_for
from test_site import OTHER, alice, audit, coordinator, coordinator_ctl, plain_sbatch, slurm_job  # noqa: F401

STALL_S = 30


@pytest.fixture
def short_stall(coordinator: str) -> Iterator[None]:  # noqa: F811
    coordinator_ctl("restart", grow_stall=str(STALL_S))
    yield
    coordinator_ctl("restart")


def daemon_pid(session: UserSession) -> int:
    return int(json.loads(session.hs("daemon", "status", "--json").stdout)["pid"])


def measured_on(session: UserSession, slurm_id: int, nodes: int) -> bool:
    """Whether the coordinator's last pass saw the job run on ``nodes`` with step times there."""
    decisions = json.loads(session.hs("site", "status", "--json").stdout)["decisions"]
    return any(d.get("slurm_job_id") == slurm_id and d.get("current") == nodes and "not measured" not in str(d.get("reason"))
               for d in decisions)


def events_of(slurm_id: int, since: float, event: str) -> list[dict[str, object]]:
    return [e for e in audit() if e.get("slurm_job_id") == slurm_id and float(str(e["time"])) >= since
            and e["event"] == event]


def slurm_state_of(slurm_id: int) -> str:
    """Slurm's accounting state of a job (it may have left the queue)."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", str(slurm_id), "-o", "State"], capture_output=True, text=True)
    return out.stdout.strip().split("\n")[0].split()[0] if out.stdout.strip() else ""


def test_a_grow_whose_allocation_cannot_start_is_given_up_and_the_job_trains_on(
        alice: UserSession, short_stall: None) -> None:  # noqa: F811
    """Alice's job shrinks 3 -> 1 for bob's plain job. When bob cancels it, the coordinator offers
    her a grow into the idle nodes, but her daemon is stopped and bob's next plain job takes them
    first. Her daemon comes back and submits the grow's allocation, which can only wait. After the
    stall limit the coordinator cancels that allocation (audited) and nothing else: her job trains
    on in its allocation, and her daemon records the grow as withdrawn."""
    copy_example(alice, "digits_cnn.py")
    job = alice.run_job("digits_cnn.py", "--nodes", "1-3", "--start-nodes", "3", "--", "--epochs", "400", *DIGITS)
    running_attempt(alice, job, 1, nodes=3, min_steps=5)
    slurm_id = int(alice.status(job)["attempts"][0]["slurm_job_id"])
    wait_for(lambda: measured_on(alice, slurm_id, nodes=3), 60, "the coordinator to know the elastic job")
    first = plain_sbatch(OTHER, nodes=2, seconds=600)
    second = 0
    try:
        running_attempt(alice, job, 2, nodes=1, min_steps=1)  # shrunk in place for bob's first job
        # Its daemon tells the coordinator its step times on one node and, a while after the shrink
        # (a job resized a moment ago needs a larger gain to be resized again), that it has run
        # there long enough for a grow to pay. A stopped daemon's last report stands.
        wait_for(lambda: measured_on(alice, slurm_id, nodes=1), 60, "the coordinator to see it measured on 1 node")
        time.sleep(45)
        daemon = daemon_pid(alice)
        os.kill(daemon, signal.SIGSTOP)  # her daemon hears of no offer until bob's next job holds the nodes
        try:
            since = time.time()
            subprocess.run(["scancel", str(first)], check=True, capture_output=True)
            wait_for(lambda: bool([e for e in events_of(slurm_id, since, "decided") if e.get("action") == "grow"]),
                     90, "the coordinator to offer a grow once bob's first job ended")
            second = plain_sbatch(OTHER, nodes=2, seconds=600)
            wait_for(lambda: slurm_job(second)[0] == "RUNNING", 60, "bob's second job to take the idle nodes")
        finally:
            os.kill(daemon, signal.SIGCONT)
        wait_for(lambda: len(alice.status(job)["attempts"]) >= 3, 60, "her daemon to submit the grow's allocation")
        successor = int(alice.status(job)["attempts"][2]["slurm_job_id"])
        assert successor != slurm_id and slurm_job(successor)[0] == "PENDING", "make-before-break: it waits"
        wait_for(lambda: bool(events_of(slurm_id, since, "abandoned")), STALL_S + 60, "the grow to be given up")
        (abandoning,) = events_of(slurm_id, since, "abandoning")
        assert abandoning["cancel"] == [successor], abandoning
        assert "trains on at 1 node" in str(abandoning["reason"])
        wait_for(lambda: slurm_state_of(successor) == "CANCELLED", 60, "the grow's allocation to be cancelled")
        assert slurm_job(slurm_id) == ("RUNNING", 1), "the job itself was not touched"
        assert slurm_job(second)[0] == "RUNNING", "nor bob's job"
        wait_for(lambda: "grow withdrawn" in alice.hs("events", str(job)).stdout, 60, "her daemon to record it")
        status = alice.status(job)
        assert status["state"] == "RUNNING", status
        before = len(steps_of_attempt(alice, job, 2))
        wait_for(lambda: len(steps_of_attempt(alice, job, 2)) > before, 60, "the job to train on at 1 node")
    finally:
        for sid in (first, second):
            if sid:
                subprocess.run(["scancel", str(sid)], capture_output=True)
    alice.hs("cancel", str(job), "--wait")
