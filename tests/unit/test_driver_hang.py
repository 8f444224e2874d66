"""C2 at unit level: the batch driver's hang watchdog over fake job steps and a clock the test
moves (the real SIGSTOPped rank is tests/integration/test_hang.py)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from test_daemon_driver import SLURM_ID, Allocation, Step, allocation, job_dir, uses_runtime

from hpcsched.daemon.requeue import reason_from_outcome
from hpcsched.jobs import layout
from hpcsched.jobs.model import AttemptReason
from hpcsched.launcher.driver import HUNG_KILL_DELAY, first_reason
from hpcsched.launcher.hang import start_allowance

__all__ = ["job_dir"]  # the fixture, shared with the driver's other tests
HANG_TIMEOUT = 30.0
START_ALLOWANCE = start_allowance(HANG_TIMEOUT)
POLLS_PER_S = 5  # the driver polls its step every 0.2 s
NEVER_ENDED_S = 4 * START_ALLOWANCE  # a driver that has not ended a hung step by then never will


@dataclass
class HungStep(Step):
    """A step whose ranks hang: it runs until SIGTERM ends it (or, when ``deaf``, until SIGKILL)."""

    deaf: bool = False
    killed: bool = False
    clock: Callable[[], float] = lambda: 0.0
    signalled_at: list[float] = field(default_factory=list)  # the clock's time at each signal

    def send_signal(self, signum: int) -> None:
        super().send_signal(signum)
        self.signalled_at.append(self.clock())

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
    """The driver with the hang watch on, over the allocation's clock. The test fails (rather than
    loop for ever) if the step is still running after NEVER_ENDED_S seconds of that clock."""
    driver = a.driver()
    driver.hang_timeout = HANG_TIMEOUT
    each_sleep = a.on_sleep

    def bounded() -> None:
        each_sleep()
        if sum(a.slept) > NEVER_ENDED_S:
            pytest.fail(f"the driver still waits for its step after {NEVER_ENDED_S:g} s")

    a.on_sleep = bounded
    return driver.run(first_reason(a.job_dir))


def hung_allocation(job_dir: str) -> tuple[Allocation, HungStep]:
    step = HungStep()
    a = allocation(job_dir, step)
    step.clock = a.slurm.clock
    return a, step


def earlier_attempt_used_the_runtime(job_dir: str) -> None:
    """Attempt 1 ran the runtime library and ended: the driver's attempt is 2."""
    layout.attempt_dir(job_dir, 1).mkdir(parents=True)
    uses_runtime(job_dir, 1)


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


def test_C2_an_attempt_that_never_starts_training_is_ended_after_the_start_allowance(job_dir: str) -> None:
    """A hang before the first progress line (rendezvous, process group, resume) of a job whose
    earlier attempt used the runtime library: ended once the longer start allowance is over."""
    earlier_attempt_used_the_runtime(job_dir)
    a, step = hung_allocation(job_dir)
    began = a.slurm.clock()
    assert run_watched(a) == 0
    assert step.signals == [signal.SIGTERM]
    assert a.record(2, "end.json")["outcome"] == "hung"  # type: ignore[index]
    assert "attempt 2 has not started training within 1800 s (an earlier attempt of this job did): ending it " \
           "as hung" in a.log(2)
    ended_after = step.signalled_at[0] - began
    assert START_ALLOWANCE < ended_after < START_ALLOWANCE + HANG_TIMEOUT, "judged by the allowance, not the timeout"


def test_an_attempt_that_starts_slowly_is_not_ended_before_the_start_allowance(job_dir: str) -> None:
    earlier_attempt_used_the_runtime(job_dir)
    step = Step(rc=0, polls=int(0.9 * START_ALLOWANCE * POLLS_PER_S))
    a = allocation(job_dir, step)
    assert run_watched(a) == 0
    assert step.signals == [] and a.record(2, "end.json")["outcome"] == "completed"  # type: ignore[index]


def test_a_first_attempt_that_never_writes_progress_is_never_judged(job_dir: str) -> None:
    """Nothing tells a plain script (no runtime library, no start line ever) from a first attempt
    that hangs before its start line: the plain script must run on."""
    step = Step(rc=0, polls=int(2 * START_ALLOWANCE * POLLS_PER_S))
    a = allocation(job_dir, step)
    assert run_watched(a) == 0
    assert step.signals == [] and a.record(1, "end.json")["outcome"] == "completed"  # type: ignore[index]


def test_the_hang_timeout_counts_from_the_start_line_once_the_attempt_started(job_dir: str) -> None:
    earlier_attempt_used_the_runtime(job_dir)
    a, step = hung_allocation(job_dir)
    began = a.slurm.clock()
    a.on_sleep = lambda: uses_runtime(job_dir, 2) if len(a.slept) == 100 * POLLS_PER_S else None  # after 100 s
    assert run_watched(a) == 0
    assert "no progress from the ranks of attempt 2 for 30 s: ending it as hung" in a.log(2)
    assert 100 + HANG_TIMEOUT < step.signalled_at[0] - began < 100 + 2 * HANG_TIMEOUT
