"""C2 at unit level: the batch driver's hang watchdog over fake job steps and a clock the test
moves (the real SIGSTOPped rank is tests/integration/test_hang.py)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass

from test_daemon_driver import SLURM_ID, Allocation, Step, allocation, job_dir, uses_runtime

from hpcsched.daemon.requeue import reason_from_outcome
from hpcsched.jobs import layout
from hpcsched.jobs.model import AttemptReason
from hpcsched.launcher.driver import HUNG_KILL_DELAY, first_reason

__all__ = ["job_dir"]  # the fixture, shared with the driver's other tests
HANG_TIMEOUT = 30.0
POLLS_PER_S = 5  # the driver polls its step every 0.2 s


@dataclass
class HungStep(Step):
    """A step whose ranks hang: it runs until SIGTERM ends it (or, when ``deaf``, until SIGKILL)."""

    deaf: bool = False
    killed: bool = False

    def poll(self) -> int | None:
        if self.killed:
            self.returncode = -signal.SIGKILL
        elif signal.SIGTERM in self.signals and not self.deaf:
            self.returncode = 143
        return self.returncode

    def kill(self) -> None:
        self.killed = True


def progress_line(job_dir: str, attempt: int, step: int) -> None:
    with layout.progress_file(job_dir).open("a") as f:
        f.write(json.dumps({"event": "step", "attempt": attempt, "step": step, "elastic": True}) + "\n")


def run_watched(a: Allocation) -> int:
    driver = a.driver()
    driver.hang_timeout = HANG_TIMEOUT
    return driver.run("submit")


def test_C2_an_attempt_without_progress_for_the_hang_timeout_is_ended_and_requeued(job_dir: str) -> None:
    step = HungStep()
    a = allocation(job_dir, step)
    uses_runtime(job_dir, 1)
    assert run_watched(a) == 0
    assert step.signals == [signal.SIGTERM]
    assert a.record(1, "end.json")["outcome"] == "hung"  # type: ignore[index]
    assert a.slurm.called("scontrol", "requeue", str(SLURM_ID))
    assert "no progress from the ranks of attempt 1 for 30 s: ending it as hung" in a.log(1)
    assert first_reason(job_dir) == "node_failure"
    assert reason_from_outcome("hung") is AttemptReason.NODE_FAILURE  # counted against --max-failures


def test_C2_a_hung_step_that_ignores_sigterm_is_killed(job_dir: str) -> None:
    step = HungStep(deaf=True)
    a = allocation(job_dir, step)
    uses_runtime(job_dir, 1)
    run_watched(a)
    assert step.killed and a.record(1, "end.json")["outcome"] == "hung"  # type: ignore[index]
    assert sum(a.slept) > HANG_TIMEOUT + HUNG_KILL_DELAY


def test_an_attempt_that_keeps_reporting_progress_is_never_ended(job_dir: str) -> None:
    seconds = 4 * HANG_TIMEOUT
    a = allocation(job_dir, Step(rc=0, polls=int(seconds * POLLS_PER_S)))
    uses_runtime(job_dir, 1)
    a.on_sleep = lambda: progress_line(job_dir, 1, len(a.slept))
    assert run_watched(a) == 0
    assert a.record(1, "end.json")["outcome"] == "completed"  # type: ignore[index]


def test_a_script_without_the_runtime_library_is_never_judged_hung(job_dir: str) -> None:
    step = Step(rc=0, polls=int(4 * HANG_TIMEOUT * POLLS_PER_S))
    a = allocation(job_dir, step)
    uses_runtime(job_dir, 7)  # another attempt's start says nothing about this one
    assert run_watched(a) == 0
    assert step.signals == [] and a.record(1, "end.json")["outcome"] == "completed"  # type: ignore[index]


def test_an_attempt_that_said_done_is_not_judged_while_it_shuts_down(job_dir: str) -> None:
    step = Step(rc=0, polls=int(4 * HANG_TIMEOUT * POLLS_PER_S))
    a = allocation(job_dir, step)
    uses_runtime(job_dir, 1)
    with layout.progress_file(job_dir).open("a") as f:
        f.write(json.dumps({"event": "done", "attempt": 1, "step": 9, "elastic": True}) + "\n")
    assert run_watched(a) == 0
    assert step.signals == []
