"""The batch driver inside an allocation, over a fake Slurm, fake job steps and a clock the test
moves: how attempts are numbered and why, what each records (info.json, end.json, its log), what
it does after a checkpoint (shrink, requeue, hand over), when a stop request reaches the ranks,
and the wait for a predecessor allocation (grow)."""

from __future__ import annotations

import io
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakeslurm import Clock, FakeJob, FakeSlurm, Run

from hpcsched.jobs import layout
from hpcsched.launcher.driver import STOP_FILE_DELAY, TAKEOVER_TIMEOUT, Driver, first_reason

SLURM_ID = 701
CHECKPOINTED = layout.EXIT_CHECKPOINTED


@dataclass
class Step:
    """One ``srun`` step as the driver sees it: it ends with ``rc`` after ``polls`` polls, or
    with 75 (checkpointed) at the next poll after SIGUSR1 when ``checkpoints``."""

    rc: int = 0
    polls: int = 1
    checkpoints: bool = True
    signals: list[int] = field(default_factory=list)
    returncode: int | None = None

    def poll(self) -> int | None:
        self.polls -= 1
        if self.checkpoints and signal.SIGUSR1 in self.signals:
            self.returncode = CHECKPOINTED
        elif self.polls < 0:
            self.returncode = self.rc
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


@dataclass
class Allocation:
    """The allocation the driver runs in: Slurm, the steps still to start, and time."""

    job_dir: str
    steps: list[Step]
    slurm: FakeSlurm = field(default_factory=lambda: FakeSlurm(Clock()))
    started: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)
    on_sleep: Callable[[], None] = lambda: None

    def __post_init__(self) -> None:
        self.slurm.jobs[SLURM_ID] = FakeJob(SLURM_ID, "hpcsched:abc:5", nodes=2, runs=[Run("RUNNING")])

    def start_step(self, argv: list[str], *, stdout: int, env: dict[str, str]) -> Step:
        self.started.append((argv, env))
        return self.steps.pop(0)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.slurm.clock.advance(seconds)
        self.on_sleep()

    def driver(self) -> Driver:
        """The driver as one run of the batch script starts it."""
        return Driver(5, self.job_dir, ["python", "-m", "hpcsched.launcher"], io.StringIO(),
                      slurm_job_id=str(SLURM_ID), slurm=self.slurm, start_step=self.start_step,  # type: ignore[arg-type]
                      clock=self.slurm.clock, sleep=self.sleep)

    def run(self) -> int:
        return self.driver().run(first_reason(self.job_dir))

    def record(self, attempt: int, name: str) -> dict[str, Any] | None:
        return layout.read_json(layout.attempt_dir(self.job_dir, attempt) / name)

    def log(self, attempt: int) -> str:
        return layout.log_path(self.job_dir, attempt).read_text()


@pytest.fixture
def job_dir(tmp_path: Path) -> str:
    return str(tmp_path)


def allocation(job_dir: str, *steps: Step) -> Allocation:
    return Allocation(job_dir, list(steps))


def uses_runtime(job_dir: str, attempt: int) -> None:
    """What the runtime library writes when it starts in an attempt."""
    with layout.progress_file(job_dir).open("a") as f:
        f.write(json.dumps({"event": "start", "attempt": attempt, "elastic": True}) + "\n")


# --- attempts and their records ----------------------------------------------------------------


def test_first_run_is_attempt_1_on_the_allocations_nodes_and_records_how_it_ended(job_dir: str) -> None:
    a = allocation(job_dir, Step(rc=0))
    assert a.run() == 0
    info = a.record(1, "info.json")
    assert info is not None and (info["attempt"], info["reason"], info["slurm_job_id"]) == (1, "submit", SLURM_ID)
    assert (info["nodes"], info["node_list"]) == (2, "node[1-2]")
    argv, env = a.started[0]
    assert argv[:3] == ["srun", "--nodes=2", "--ntasks=2"]
    assert (env["HPCSCHED_ATTEMPT"], env["SLURM_NNODES"], env["SLURM_JOB_NODELIST"]) == ("1", "2", "node[1-2]")
    end = a.record(1, "end.json")
    assert end is not None and (end["exit_code"], end["outcome"]) == (0, "completed")
    assert f"job 5 attempt 1 (submit), Slurm job {SLURM_ID} on node[1-2]" in a.log(1)
    assert "attempt 1 exited with status 0" in a.log(1)


def test_a_failing_script_ends_its_attempt_failed_and_is_not_requeued(job_dir: str) -> None:
    a = allocation(job_dir, Step(rc=3))
    assert a.run() == 3
    assert a.record(1, "end.json")["outcome"] == "failed"  # type: ignore[index]
    assert not a.slurm.called("scontrol", "requeue")


def test_B5_each_run_of_the_batch_script_is_the_next_attempt_with_its_reason(job_dir: str) -> None:
    first = allocation(job_dir, Step(rc=CHECKPOINTED))  # stopped at a checkpoint, nothing asked: time limit
    assert first.run() == 0
    assert first.slurm.called("scontrol", "requeue", str(SLURM_ID)) and first.slept[-1] == 60, "Slurm ends the step"
    assert first.record(1, "end.json")["outcome"] == "timeout"  # type: ignore[index]
    died = allocation(job_dir, Step(rc=0))
    layout.allocate_attempt(job_dir)  # attempt 2 started, then its node died: no end.json
    assert died.run() == 0
    third = died.record(3, "info.json")
    assert third is not None and (third["attempt"], third["reason"]) == (3, "requeue")
    assert layout.existing_attempts(job_dir) == [1, 2, 3]


def test_the_run_after_a_timeout_says_timeout(job_dir: str) -> None:
    allocation(job_dir, Step(rc=CHECKPOINTED)).run()
    second = allocation(job_dir, Step(rc=0))
    second.run()
    assert second.record(2, "info.json")["reason"] == "timeout"  # type: ignore[index]


# --- after a checkpoint ------------------------------------------------------------------------


def test_shrink_runs_the_next_attempt_on_fewer_nodes_in_the_same_allocation(job_dir: str) -> None:
    a = allocation(job_dir, Step(rc=CHECKPOINTED), Step(rc=0))
    layout.write_json(layout.resize_request(job_dir), {"mode": "shrink", "nodes": 1})
    assert a.run() == 0
    assert a.slurm.called("scontrol", "update", f"JobId={SLURM_ID}", "NumNodes=1")
    assert a.record(1, "end.json")["outcome"] == "resize"  # type: ignore[index]
    assert a.record(2, "info.json")["reason"] == "resize"  # type: ignore[index]
    assert a.started[1][0][1] == "--nodes=1" and a.started[1][1]["SLURM_NNODES"] == "1"
    assert not a.slurm.called("scontrol", "requeue") and not layout.resize_request(job_dir).exists()


def test_a_requeue_asked_by_hpcsched_requeues_the_allocation(job_dir: str) -> None:
    a = allocation(job_dir, Step(rc=CHECKPOINTED))
    layout.write_json(layout.resize_request(job_dir), {"mode": "requeue", "nodes": 3})
    a.run()
    assert a.record(1, "end.json")["outcome"] == "requeue"  # type: ignore[index]
    assert a.slurm.called("scontrol", "requeue", str(SLURM_ID))


@pytest.mark.parametrize("hand_over", ["superseded marker", "handover request", "both"])
def test_an_allocation_handed_over_to_a_grown_one_ends_without_requeue(job_dir: str, hand_over: str) -> None:
    a = allocation(job_dir, Step(rc=CHECKPOINTED))
    if hand_over != "handover request":
        layout.superseded(job_dir).write_text("702")
    if hand_over != "superseded marker":
        layout.write_json(layout.resize_request(job_dir), {"mode": "handover", "nodes": 3})
    assert a.run() == 0
    assert a.record(1, "end.json")["outcome"] == "superseded"  # type: ignore[index]
    assert not a.slurm.called("scontrol")[1:], "only the node lookup"
    # A hand-over request the successor no longer needed is not left to block the next resize.
    assert not layout.resize_request(job_dir).exists()


def test_a_cancelled_allocation_records_the_attempt_cancelled(job_dir: str) -> None:
    a = allocation(job_dir, Step(rc=143))
    driver = a.driver()
    driver.terminate.set()  # SIGTERM from scancel arrived while the step ran
    assert driver.run("submit") == 143
    assert a.record(1, "end.json")["outcome"] == "cancelled"  # type: ignore[index]
    assert not a.slurm.called("scontrol", "requeue")


# --- stop requests (signal forwarding) ---------------------------------------------------------


def test_a_stop_request_reaches_the_ranks_of_a_script_that_uses_the_runtime_library(job_dir: str) -> None:
    a = allocation(job_dir, Step(rc=0, polls=100))
    uses_runtime(job_dir, 1)
    driver = a.driver()
    driver.stop_signal.set()  # SIGUSR1: Slurm's early warning or hpcsched's stop
    driver.run("submit")
    assert a.steps == [] and a.record(1, "end.json")["exit_code"] == CHECKPOINTED  # type: ignore[index]
    assert "stop request: asking every rank of attempt 1 to checkpoint" in a.log(1)


def test_a_stop_request_is_not_passed_to_a_script_without_the_runtime_library(job_dir: str) -> None:
    step = Step(rc=0, polls=5)
    a = allocation(job_dir, step)
    uses_runtime(job_dir, 7)  # another attempt's start says nothing about this one
    driver = a.driver()
    driver.stop_signal.set()
    assert driver.run("submit") == 0
    assert step.signals == [] and "stop request ignored" in a.log(1)


def test_ranks_that_do_not_stop_get_the_stop_file_after_the_delay(job_dir: str) -> None:
    step = Step(rc=CHECKPOINTED, polls=int(STOP_FILE_DELAY / 0.2) + 10, checkpoints=False)
    a = allocation(job_dir, step)
    uses_runtime(job_dir, 1)
    driver = a.driver()
    driver.stop_signal.set()
    driver.run("submit")
    assert step.signals == [signal.SIGUSR1], "the signal is sent once"
    assert layout.stop_request(job_dir).exists()
    assert "leaving the stop-request file as well" in a.log(1)


# --- grow: taking over from the predecessor ----------------------------------------------------


def test_a_grown_allocation_waits_for_its_predecessor_to_stop_then_takes_over(job_dir: str) -> None:
    a = allocation(job_dir)
    a.slurm.jobs[700] = FakeJob(700, "hpcsched:abc:5", runs=[Run("RUNNING")])
    a.on_sleep = lambda: a.slurm.end(700) if len(a.slept) == 4 else None
    assert a.driver().take_over("700") is True
    assert a.slurm.called("scancel", "--signal=USR1", "--batch", "700")
    assert a.slept == [1.0, 2.0, 4.0, 8.0], "polls back off"
    assert not layout.superseded(job_dir).exists()


def test_a_predecessor_that_never_stops_is_cancelled_after_the_takeover_timeout(job_dir: str) -> None:
    """Two allocations must never train the job at once: they would both write its checkpoints."""
    a = allocation(job_dir)
    a.slurm.jobs[700] = FakeJob(700, "hpcsched:abc:5", runs=[Run("RUNNING")])
    assert a.driver().take_over("700") is True
    assert TAKEOVER_TIMEOUT <= sum(a.slept) < TAKEOVER_TIMEOUT + 20
    assert a.slurm.called("scancel", "700") and a.slurm.jobs[700].state == "CANCELLED"


def test_nothing_is_taken_over_when_the_job_already_finished_in_the_predecessor(job_dir: str) -> None:
    a = allocation(job_dir)
    folder = layout.attempt_dir(job_dir, layout.allocate_attempt(job_dir))
    layout.write_json(folder / "end.json", {"attempt": 1, "exit_code": 0, "outcome": "completed"})
    assert a.driver().take_over("700") is False


def test_a_stop_nobody_explains_far_from_the_time_limit_goes_on_in_place(job_dir: str) -> None:
    """A repeated or stray SIGUSR1 (no resize request, no site decision, hours before the limit)
    costs one restart in the same allocation, never a trip through the queue."""
    a = allocation(job_dir, Step(rc=CHECKPOINTED), Step(rc=0))
    a.slurm.jobs[SLURM_ID].ends_in = 3600.0
    assert a.run() == 0
    assert not a.slurm.called("scontrol", "requeue")
    assert not a.slurm.called("scontrol", "update")
    second = a.record(2, "info.json")
    assert second is not None and (second["reason"], second["nodes"]) == ("resize", 2)


def test_a_site_decision_newer_than_the_attempt_shrinks_it_in_place(job_dir: str, tmp_path: Path) -> None:
    decisions = tmp_path / "decisions"
    decisions.mkdir(mode=0o755)
    a = allocation(job_dir, Step(rc=CHECKPOINTED), Step(rc=0))
    driver = a.driver()
    driver.site_decisions = str(decisions)

    def decide_after_start() -> None:  # the coordinator decides while attempt 1 runs
        path = decisions / f"{SLURM_ID}.json"
        if not path.exists():
            path.write_text(json.dumps({"slurm_job_id": SLURM_ID, "mode": "shrink", "nodes": 1, "time": 4e9}))
            os.chmod(path, 0o644)

    a.on_sleep = decide_after_start
    assert driver.run("submit") == 0
    assert a.slurm.called("scontrol", "update", f"JobId={SLURM_ID}", "NumNodes=1")
    second = a.record(2, "info.json")
    assert second is not None and (second["reason"], second["nodes"]) == ("resize", 1)


def test_a_predecessor_requeued_while_its_successor_waited_is_cancelled_not_waited_for(job_dir: str) -> None:
    """It checkpointed before its time-limit requeue; left in the queue it would start again and
    train beside the grown allocation."""
    a = allocation(job_dir)
    a.slurm.jobs[700] = FakeJob(700, "hpcsched:abc:5", runs=[Run("RUNNING")])
    a.slurm.requeue(700)
    assert a.driver().take_over("700") is True
    assert a.slurm.jobs[700].state == "CANCELLED" and sum(a.slept) < 5
