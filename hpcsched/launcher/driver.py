"""The batch driver: what the generated batch script runs (``exec python -m hpcsched.launcher.driver``).

It runs the job's attempts inside one Slurm allocation and carries out resizes there:

- each attempt is one ``srun`` of the per-node launcher, its output in ``attempt-<n>.log``;
- Slurm's early warning (``--signal=B:USR1@lead``) or a stop from hpcsched reaches the driver as
  SIGUSR1 and is forwarded to srun, which forwards it to every launcher, which passes it into the
  container (see hpcsched.runtime.forward) — for jobs that use the runtime library only;
- when an attempt ends with exit 75 (checkpointed), the driver looks at what was asked:
  shrink in place (``scontrol update NumNodes``, then the next attempt on the remaining nodes),
  requeue (``scontrol requeue``), handed over to a grown successor allocation (exit 0), or none,
  which means the time limit is near (requeue, counted as a timeout);
- started as the successor of a running allocation (grow, make-before-break), it first asks the
  predecessor to checkpoint and waits until it has stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

from hpcsched.jobs import layout
from hpcsched.launcher import rendezvous
from hpcsched.launcher.hang import ProgressWatch
from hpcsched.launcher.site_decision import read_decision
from hpcsched.slurm import runner
from hpcsched.slurm.client import poll_delay
from hpcsched.slurm.runner import SlurmCommandError

TAKEOVER_TIMEOUT = 900.0
GONE = ("", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
        "DEADLINE")
CANCEL_GRACE = 120.0  # after scancel, how long the predecessor may still be listed (Slurm's KillWait and epilog)
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")  # a predecessor waiting to run again
TAKEOVER_POLL_S, TAKEOVER_POLL_MAX_S = 1.0, 10.0  # squeue for the predecessor: 1 s doubling to 10 s
STEP_WAIT_SECONDS = 120  # after the first task of a step ends, how long the others may take
STOP_FILE_DELAY = 10.0  # the signal normally arrives within a second; the file is the fallback
HUNG_KILL_DELAY = 30.0  # a hung step that SIGTERM did not end by then gets SIGKILL


def say(log: IO[str], message: str) -> None:
    log.write(f"hpcsched: {time.strftime('%H:%M:%S')} {message}\n")
    log.flush()


def allocation_nodes(slurm_job_id: str, slurm: runner.Runner = runner.run_slurm) -> tuple[str, int]:
    """The allocation's current node list and count; SLURM_* variables go stale after a shrink."""
    out = slurm(["scontrol", "show", "job", "-o", slurm_job_id]).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return fields.get("NodeList", ""), int(fields.get("NumNodes", "0").split("-")[0] or 0)


def seconds_left(slurm_job_id: str, slurm: runner.Runner = runner.run_slurm) -> float:
    """Seconds until the allocation's time limit (inf without one, or when Slurm does not say)."""
    try:
        out = slurm(["scontrol", "show", "job", "-o", slurm_job_id]).stdout
    except SlurmCommandError:
        return math.inf
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    if fields.get("TimeLimit") in (None, "UNLIMITED", "Partition_Limit"):
        return math.inf
    try:
        return time.mktime(time.strptime(fields.get("EndTime", ""), "%Y-%m-%dT%H:%M:%S")) - time.time()
    except ValueError:
        return math.inf


def uses_runtime(job_dir: str, attempt: int) -> bool:
    """The runtime library announced itself for this attempt (``"event": "start"``)."""
    try:
        with open(layout.progress_file(job_dir), encoding="utf-8") as f:
            lines = [parse_line(line) for line in f]
    except FileNotFoundError:
        return False
    return any(r.get("event") == "start" and r.get("attempt") == attempt and r.get("elastic") for r in lines)


def parse_line(line: str) -> dict[str, object]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class Driver:
    """``slurm`` (the command runner), ``start_step``, ``clock`` and ``sleep`` are Slurm and time
    as the driver sees them (default: :mod:`hpcsched.slurm.runner` and the real clock); tests
    pass fakes and a clock they move. ``hang_timeout``: seconds without a progress line after
    which an attempt of a runtime-library job is ended as hung and the job requeued (0: never)."""

    def __init__(self, job_id: int, job_dir: str, launcher: list[str], log_dir_fallback: IO[str], *,
                 slurm_job_id: str | None = None, slurm: runner.Runner | None = None,
                 start_step: Callable[..., subprocess.Popen[bytes]] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 hang_timeout: float = 0.0, site_decisions: str | None = None, cwd: str | None = None) -> None:
        self.job_id = job_id
        self.job_dir = job_dir
        self.launcher = launcher
        self.slurm_job_id = slurm_job_id or os.environ["SLURM_JOB_ID"]
        self.slurm = slurm or runner.run_slurm
        self.start_step = start_step or runner.start_step
        self.clock = clock
        self.sleep = sleep
        self.out = log_dir_fallback
        self.step: subprocess.Popen[bytes] | None = None
        self.stop_signal = threading.Event()
        self.terminate = threading.Event()
        self.attempt = 0
        self.stop_file_due: float | None = None
        self.hang_timeout = hang_timeout
        self.hung_since: float | None = None  # when this attempt was ended as hung
        self.site_decisions = site_decisions  # a site coordinator's decisions directory (site mode)
        self.attempt_started = 0.0
        self.nodes = 0  # the allocation's node count at the start of this attempt
        self.cwd = cwd or os.getcwd()  # where Slurm's commands run: the job's work directory

    # --- signals ----------------------------------------------------------------------------

    def install_handlers(self) -> None:
        def on_usr1(_signum: int, _frame: FrameType | None) -> None:
            self.stop_signal.set()

        def on_term(_signum: int, _frame: FrameType | None) -> None:
            self.terminate.set()
            if self.step is not None and self.step.poll() is None:
                self.step.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGUSR1, on_usr1)
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)

    def _forward_stop(self, log: IO[str]) -> None:
        self.stop_signal.clear()
        if not uses_runtime(self.job_dir, self.attempt):
            say(log, "stop request ignored: the script does not use the hpcsched runtime library")
            return
        say(log, f"stop request: asking every rank of attempt {self.attempt} to checkpoint")
        if self.step is not None and self.step.poll() is None:
            self.step.send_signal(signal.SIGUSR1)
        self.stop_file_due = self.clock() + STOP_FILE_DELAY

    # --- attempts ---------------------------------------------------------------------------

    def run_attempt(self, reason: str) -> int:
        self.attempt = layout.allocate_attempt(self.job_dir)
        layout.stop_request(self.job_dir).unlink(missing_ok=True)
        nodes, count = allocation_nodes(self.slurm_job_id, self.slurm)
        self.attempt_started, self.nodes = time.time(), count
        env = dict(os.environ, SLURM_JOB_NODELIST=nodes, SLURM_NODELIST=nodes, SLURM_NNODES=str(count),
                   SLURM_JOB_NUM_NODES=str(count), HPCSCHED_ATTEMPT=str(self.attempt), HPCSCHED_JOB_DIR=self.job_dir)
        layout.write_json(layout.attempt_dir(self.job_dir, self.attempt) / "info.json", {
            "attempt": self.attempt, "reason": reason, "slurm_job_id": int(self.slurm_job_id),
            "nodes": count, "node_list": nodes, "start_time": self.attempt_started,
        })
        # Not --kill-on-bad-exit: a rank that stopped at a checkpoint exits 75 first, and the others
        # must finish their own clean exit; --wait still ends a step whose other nodes hang.
        argv = ["srun", f"--nodes={count}", f"--ntasks={count}", "--ntasks-per-node=1", "--kill-on-bad-exit=0",
                f"--wait={STEP_WAIT_SECONDS}", *self.launcher]
        with open(layout.log_path(self.job_dir, self.attempt), "a", encoding="utf-8") as log:
            say(log, f"job {self.job_id} attempt {self.attempt} ({reason}), Slurm job {self.slurm_job_id} on {nodes}")
            rc = self.run_step_on_free_port(argv, env, log)
            say(log, f"job {self.job_id} attempt {self.attempt} exited with status {rc}")
        return rc

    def run_step_on_free_port(self, argv: list[str], env: dict[str, str], log: IO[str]) -> int:
        """Run the step with a rendezvous port free on this (the first) node; run it again on
        another port when torchrun found its port taken, so a busy port never fails a job (C4)."""
        taken: list[int] = []
        while True:
            port = rendezvous.choose_port(int(self.slurm_job_id), taken, rendezvous.port_is_free,
                                          rendezvous.any_free_port)
            say(log, f"rendezvous port {port}")
            start = os.fstat(log.fileno()).st_size
            rc = self.wait_step(argv, {**env, rendezvous.PORT_ENV: str(port)}, log, busy_port_since=start)
            if rc in (0, layout.EXIT_CHECKPOINTED) or self.terminate.is_set() or len(taken) >= rendezvous.PORT_RETRIES \
                    or not rendezvous.port_was_busy(rendezvous.read_from(log.name, start)):
                return rc
            taken.append(port)
            say(log, f"rendezvous port {port} was taken before torchrun could listen on it: starting again")

    def wait_step(self, argv: list[str], env: dict[str, str], log: IO[str], busy_port_since: int | None = None) -> int:
        """Run the step to its end. ``busy_port_since``: the log's size when it started; once the
        output after it says the rendezvous port was taken, the step is ended at once (the first
        node's torchrun has failed, the other nodes would wait ``STEP_WAIT_SECONDS`` for nothing)."""
        self.step = self.start_step(argv, stdout=log.fileno(), env=env)
        self.stop_file_due = None
        watch = ProgressWatch(layout.progress_file(self.job_dir), self.attempt, self.hang_timeout, self.clock()) \
            if self.hang_timeout > 0 else None
        port_watch = rendezvous.BusyPortWatch(log.name, busy_port_since) if busy_port_since is not None else None
        while self.step.poll() is None:
            if port_watch is not None and port_watch.taken(self.clock()):
                say(log, "the first node's torchrun could not listen on the rendezvous port: ending the step")
                self.step.send_signal(signal.SIGTERM)
                port_watch = None
            if watch is not None and (self.hung_since is not None or watch.stalled(self.clock())):
                self._end_hung_step(log, watch.verdict())
            if self.stop_signal.is_set():
                self._forward_stop(log)
            if self.stop_file_due is not None and self.clock() > self.stop_file_due:
                say(log, "the ranks have not stopped yet: leaving the stop-request file as well")
                layout.stop_request(self.job_dir).touch()
                self.stop_file_due = None
            self.sleep(0.2)
        rc = self.step.returncode
        return rc if rc >= 0 else 128 - rc

    def _end_hung_step(self, log: IO[str], verdict: str) -> None:
        """SIGTERM the step once (srun passes it to every launcher, which removes its container);
        SIGKILL it if it is still there HUNG_KILL_DELAY seconds later."""
        assert self.step is not None
        if self.hung_since is None:
            self.hung_since = self.clock()
            say(log, f"{verdict}: ending it as hung; the job will be requeued")
            self.step.send_signal(signal.SIGTERM)
        elif self.clock() - self.hung_since > HUNG_KILL_DELAY:
            self.step.kill()

    def checkpointed(self, rc: int) -> int:
        """The launchers end a step that stopped at a checkpoint with status 0, so that Slurm does
        not record an intended stop as a failed step (FAILED 75); the marker the runtime wrote
        tells the driver, which goes on as for exit 75."""
        if rc == 0 and layout.checkpointed_marker(self.job_dir, self.attempt).exists():
            return layout.EXIT_CHECKPOINTED
        return rc

    def end_attempt(self, rc: int, outcome: str) -> None:
        layout.write_json(layout.attempt_dir(self.job_dir, self.attempt) / "end.json",
                          {"attempt": self.attempt, "exit_code": rc, "outcome": outcome, "end_time": time.time()})

    def after_checkpoint(self) -> tuple[str, int | None]:
        """What to do after an attempt stopped at a checkpoint: (outcome, nodes for a shrink). The
        resize request is taken in every case: one left behind (a hand-over request written while
        the successor was already taking over) would block every later resize of the job."""
        request = layout.read_json(layout.resize_request(self.job_dir))
        layout.resize_request(self.job_dir).unlink(missing_ok=True)
        if layout.superseded(self.job_dir).exists():
            return "superseded", None
        if request is None:
            decided = read_decision(self.site_decisions, self.slurm_job_id, self.attempt_started)
            if decided is not None:
                return "resize", decided
            if seconds_left(self.slurm_job_id, self.slurm) > 2 * layout.SIGNAL_LEAD_SECONDS:
                return "resize", self.nodes  # a stop nobody explains (a repeated signal): go on in place
            return "timeout", None
        if request.get("mode") == "handover":  # the grown successor waits for these very nodes
            return "superseded", None
        if request.get("mode") == "shrink":
            return "resize", int(request["nodes"])
        return "requeue", None

    def keep_resize_scripts(self) -> None:
        """``scontrol update NumNodes`` writes slurm_job_<id>_resize.sh/.csh into its working
        directory, the user's work directory: move them into the attempt's directory."""
        for suffix in ("sh", "csh"):
            name = f"slurm_job_{self.slurm_job_id}_resize.{suffix}"
            try:
                shutil.move(os.path.join(self.cwd, name), layout.attempt_dir(self.job_dir, self.attempt) / name)
            except FileNotFoundError:
                pass
            except OSError:
                Path(self.cwd, name).unlink(missing_ok=True)

    def requeue_self(self) -> int:
        self.slurm(["scontrol", "requeue", self.slurm_job_id])
        self.sleep(60)  # Slurm ends this batch step as part of the requeue
        return 0

    def run(self, first_reason: str) -> int:
        reason = first_reason
        while True:
            self.hung_since = None
            rc = self.checkpointed(self.run_attempt(reason))
            if self.terminate.is_set():
                self.end_attempt(rc, "cancelled")
                return rc
            if self.hung_since is not None:
                self.end_attempt(rc, "hung")  # counted as a failure, limited by --max-failures
                return self.requeue_self()
            if rc != layout.EXIT_CHECKPOINTED:
                self.end_attempt(rc, "completed" if rc == 0 else "failed")
                return rc
            outcome, shrink_to = self.after_checkpoint()
            self.end_attempt(rc, outcome)
            if outcome == "superseded":
                return 0
            if outcome == "resize" and shrink_to is not None:
                if shrink_to < self.nodes:  # a decision no longer smaller than the allocation: go on as is
                    self.slurm(["scontrol", "update", f"JobId={self.slurm_job_id}", f"NumNodes={shrink_to}"])
                    self.keep_resize_scripts()
                reason = "resize"
                continue
            return self.requeue_self()

    # --- grow: take over from the predecessor allocation --------------------------------------

    def take_over(self, predecessor: str) -> bool:
        """Ask the predecessor to checkpoint and wait until it stopped. False if the job already
        finished there (nothing left to do).

        The job must never train in two allocations at once (both would write its checkpoints):
        a predecessor back in the queue (requeued at its time limit or after a node failure; it
        checkpointed before) is cancelled at once, and one that has not stopped within
        ``TAKEOVER_TIMEOUT`` is cancelled before this allocation goes on."""
        layout.superseded(self.job_dir).write_text(self.slurm_job_id)
        layout.stop_request(self.job_dir).touch()
        try:
            self.slurm(["scancel", "--signal=USR1", "--batch", predecessor])
        except SlurmCommandError:
            pass  # already gone
        deadline = self.clock() + TAKEOVER_TIMEOUT
        polls, cancelled = 0, False
        while (state := self._state_of(predecessor)) not in GONE:
            if state in QUEUED:  # it checkpointed before it went back; nothing of it runs
                self._cancel(predecessor, "is back in the queue")
                break
            if self.clock() >= deadline + (CANCEL_GRACE if cancelled else 0):
                if cancelled:
                    say(self.out, f"allocation {predecessor} is still listed as {state}; going on")
                    break
                self._cancel(predecessor, f"did not stop within {TAKEOVER_TIMEOUT:.0f} s")
                cancelled = True
            self.sleep(poll_delay(TAKEOVER_POLL_S, TAKEOVER_POLL_MAX_S, polls))  # 1, 2, 4, 8, 10, 10 ... s
            polls += 1
        layout.superseded(self.job_dir).unlink(missing_ok=True)
        done = [layout.read_json(layout.attempt_dir(self.job_dir, n) / "end.json")
                for n in layout.existing_attempts(self.job_dir)]
        return not any(d is not None and d.get("exit_code") == 0 for d in done)

    def _state_of(self, slurm_job_id: str) -> str:
        """The job's state as squeue shows it; "" once the controller no longer lists it."""
        try:
            return self.slurm(["squeue", "-h", "-j", slurm_job_id, "-o", "%T"], timeout=30).stdout.strip()
        except SlurmCommandError:
            return ""

    def _cancel(self, slurm_job_id: str, why: str) -> None:
        say(self.out, f"allocation {slurm_job_id} {why}: cancelling it, so that the job trains in one allocation only")
        try:
            self.slurm(["scancel", slurm_job_id])
        except SlurmCommandError:
            pass  # gone already


def first_reason(job_dir: str) -> str:
    """Why this run of the batch script is happening."""
    previous = layout.existing_attempts(job_dir)
    if not previous:
        return "submit"
    end = layout.read_json(layout.attempt_dir(job_dir, previous[-1]) / "end.json")
    if end is None:
        return "requeue"  # the previous run died with its node or was preempted; the daemon asks sacct
    return {"timeout": "timeout", "requeue": "resize", "hung": "node_failure"}.get(str(end.get("outcome")), "requeue")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hpcsched-driver")
    p.add_argument("--job-id", type=int, required=True)
    p.add_argument("--job-dir", required=True)
    p.add_argument("--predecessor", default=None, help="Slurm id of the allocation this one replaces (grow)")
    p.add_argument("--hang-timeout", type=float, default=0.0, help="seconds without progress before a hung attempt ends")
    p.add_argument("--site-decisions", default=None, help="a site coordinator's decisions directory (site mode)")
    p.add_argument("launcher", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    launcher = a.launcher[1:] if a.launcher[:1] == ["--"] else a.launcher
    driver = Driver(a.job_id, a.job_dir, launcher, sys.stdout, hang_timeout=a.hang_timeout,
                    site_decisions=a.site_decisions)
    driver.install_handlers()
    if a.predecessor:
        if not driver.take_over(a.predecessor):
            print(f"hpcsched: job {a.job_id} already finished in allocation {a.predecessor}", flush=True)
            return 0
        return driver.run("resize")
    return driver.run(first_reason(a.job_dir))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
