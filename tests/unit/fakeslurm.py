"""A small fake Slurm for unit tests of the daemon core, answering in documents recorded from the
local cluster (tests/fixtures/slurm-22.05): each answer is a copy of a recorded ``squeue --json``
or ``sacct --json`` job with the state, ids, comment and times edited in memory.

:class:`FakeSlurm` is a runner with ``run_slurm``'s signature (``SlurmClient(runner=...)``). It
keeps a dict of jobs and answers ``sbatch --parsable``, ``squeue --json``, ``sacct --json -D``,
``scancel``, ``scontrol requeue`` and ``scontrol update NumNodes=``; :meth:`FakeSlurm.fail`
makes a command exit non-zero or time out the next N times, ``down`` makes commands time out until
they are taken out of it, and ``sbatch_fault`` makes ``sbatch`` fail the ways it can after or
instead of queueing the job (A3), the way the real commands fail.
:class:`Clock` is the injected clock that tests move by hand (submitit's fast-forward clock), and
:class:`Core` wires store, client, submitter, monitor and service over both.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcsched.config import Settings
from hpcsched.daemon import protocol
from hpcsched.daemon.monitor import Monitor
from hpcsched.daemon.server import Server
from hpcsched.daemon.service import Caller, JobService
from hpcsched.daemon.store import Store
from hpcsched.daemon.submission import Submitter
from hpcsched.planning.plan import job_tag
from hpcsched.planning.request import JobRequest
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.runner import CommandResult, SlurmCommandError

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"
# `scontrol show job -o` of a two-node job on the local cluster (22.05), up to the node count.
SHOW_JOB = ("JobId=1358 JobName=wrap UserId=hpcuser(1001) GroupId=hpcuser(1001) MCS_label=N/A Priority=4294901422 "
            "Nice=0 Account=research QOS=normal JobState=RUNNING Reason=None Dependency=(null) Requeue=1 Restarts=0 "
            "BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:04 TimeLimit=365-00:00:00 TimeMin=N/A "
            "Partition=debug NodeList=node[2-3] BatchHost=node2 NumNodes=2 NumCPUs=2 NumTasks=2 CPUs/Task=1\n")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"}


def end_time(seconds_from_now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + seconds_from_now))


@functools.cache
def recorded(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return document


def recorded_job(name: str, job_id: int) -> dict[str, Any]:
    """A fresh copy of one job of a recorded document (the first run of that id)."""
    copied: dict[str, Any] = json.loads(_recorded_job_text(name, job_id))  # faster than a deep copy
    return copied


@functools.cache
def _recorded_job_text(name: str, job_id: int) -> str:
    return json.dumps(next(j for j in recorded(name)["jobs"] if j["job_id"] == job_id))


@dataclass
class Run:
    """One run of a Slurm job (a requeue starts another run of the same id)."""

    state: str = "PENDING"
    submit: int = 0
    start: int = 0
    end: int = 0


@dataclass
class FakeJob:
    job_id: int
    comment: str
    nodes: int = 1
    reason: str = "None"
    runs: list[Run] = field(default_factory=list)
    ends_in: float = 60.0  # seconds to the time limit (scontrol's EndTime): a stop now is the limit's warning

    @property
    def run(self) -> Run:
        return self.runs[-1]

    @property
    def state(self) -> str:
        return self.run.state

    @property
    def restart_count(self) -> int:
        return len(self.runs) - 1


@dataclass
class FakeSlurm:
    clock: Clock
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    failures: dict[str, list[bool]] = field(default_factory=dict)  # command -> next answers: True = time out
    down: set[str] = field(default_factory=set)  # commands that time out, every call
    sbatch_fault: str = ""  # "queue_then_fail", "queue_then_time_out", "time_out" (nothing queued yet) or "reject"
    next_id: int = 700

    def __call__(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 30.0) -> CommandResult:
        argv = tuple(argv)
        self.calls.append(argv)
        pending = self.failures.get(argv[0])
        if argv[0] in self.down:
            raise SlurmCommandError(argv, None, "", "", why=f"no answer within {timeout:.0f} s")
        if pending:
            if pending.pop(0):
                raise SlurmCommandError(argv, None, "", "", why=f"no answer within {timeout:.0f} s")
            raise SlurmCommandError(argv, 1, "", f"{argv[0]}: error: Unable to contact slurm controller (connect failure)\n")
        out = getattr(self, f"_{argv[0]}")(list(argv))
        return CommandResult(argv, out, "")

    # --- what a test does to Slurm ------------------------------------------------------------

    def fail(self, command: str, times: int = 1, timed_out: bool = False) -> None:
        """The next ``times`` calls of ``command`` fail (exit 1, or no answer in time)."""
        self.failures.setdefault(command, []).extend([timed_out] * times)

    def called(self, command: str, *words: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == command and all(w in c for w in words)]

    def queue(self, comment: str, state: str = "PENDING") -> int:
        """A job Slurm has (as sbatch leaves it, or as another submitter left it); its Slurm id."""
        self.next_id += 1
        now = int(self.clock())
        self.jobs[self.next_id] = FakeJob(self.next_id, comment, runs=[Run(state, now, now if state == "RUNNING" else 0)])
        return self.next_id

    def tagged(self, comment: str) -> list[FakeJob]:
        return [j for j in self.jobs.values() if j.comment == comment]

    def start(self, job_id: int) -> None:
        self.jobs[job_id].run.state, self.jobs[job_id].run.start = "RUNNING", int(self.clock())

    def end(self, job_id: int, state: str = "COMPLETED") -> None:
        self.jobs[job_id].run.state, self.jobs[job_id].run.end = state, int(self.clock())

    def requeue(self, job_id: int, ended: str = "REQUEUED") -> None:
        """The current run ends as ``ended`` (REQUEUED, NODE_FAIL, PREEMPTED) and the job waits
        in the queue again with its restart count one higher, as Slurm does."""
        self.end(job_id, ended)
        self.jobs[job_id].runs.append(Run(submit=int(self.clock())))
        self.jobs[job_id].reason = "BeginTime"

    # --- the commands -------------------------------------------------------------------------

    def _sbatch(self, argv: list[str]) -> str:
        script = Path(argv[-1]).read_text()
        comment = re.search(r"^#SBATCH --comment=(\S+)$", script, re.M)
        assert comment, "the batch script carries the job's tag"
        if self.sbatch_fault == "reject":
            raise SlurmCommandError(argv, 1, "", "sbatch: error: Invalid partition name specified\n")
        if self.sbatch_fault == "time_out":  # a test queues it later, or never (slurmctld's choice)
            raise SlurmCommandError(argv, None, "", "", why="no answer within 60 s")
        job_id = self.queue(comment.group(1))
        if self.sbatch_fault == "queue_then_fail":
            raise SlurmCommandError(argv, 1, f"{job_id}\n", "wrapper: post-submit hook failed\n")
        if self.sbatch_fault == "queue_then_time_out":
            raise SlurmCommandError(argv, None, "", "", why="no answer within 60 s")
        return f"{job_id}\n"

    def _squeue(self, argv: list[str]) -> str:
        if "-j" in argv:  # squeue -h -j ID -o %T: the state while Slurm still lists the job
            job = self.jobs.get(int(argv[argv.index("-j") + 1]))
            return f"{job.state}\n" if job and job.state not in FINAL else ""
        jobs = [self._queued(j) for j in self.jobs.values() if j.state not in FINAL]
        return json.dumps({**recorded("squeue-mixed.json"), "jobs": jobs})

    def _sacct(self, argv: list[str]) -> str:
        asked = next((a.split("=", 1)[1].split(",") for a in argv if a.startswith("--jobs=")), None)
        jobs = [self._accounted(j, r) for j in self.jobs.values() if asked is None or str(j.job_id) in asked
                for r in j.runs if r.start or r.end or j.restart_count == 0]  # a requeued run: once it starts
        return json.dumps({**recorded("sacct-mixed.json"), "jobs": jobs})

    def _scancel(self, argv: list[str]) -> str:
        if not any(a.startswith("--signal") for a in argv):
            self.end(int(argv[-1]), "CANCELLED")
        return ""

    def _sinfo(self, argv: list[str]) -> str:
        return (RECORDED / "sinfo-nodes.json").read_text()

    def _scontrol(self, argv: list[str]) -> str:
        if argv[1:] == ["-a", "-o", "show", "partition"]:
            return (RECORDED / "scontrol-partitions.txt").read_text()
        if argv[1:4] == ["show", "job", "-o"]:
            job = self.jobs[int(argv[4])]
            nodes = f"node[1-{job.nodes}]" if job.nodes > 1 else "node1"
            return (SHOW_JOB.replace("JobId=1358", f"JobId={job.job_id}").replace("node[2-3]", nodes)
                    .replace("NumNodes=2", f"NumNodes={job.nodes}").replace("JobState=RUNNING", f"JobState={job.state}")
                    .replace("TimeMin=", f"EndTime={end_time(job.ends_in)} TimeMin="))
        if argv[1] == "requeue":
            self.requeue(int(argv[2]))
        elif argv[1] == "update":
            words = dict(a.split("=", 1) for a in argv[2:])
            self.jobs[int(words["JobId"])].nodes = int(words["NumNodes"])
        return ""

    def _queued(self, job: FakeJob) -> dict[str, Any]:
        doc = recorded_job("squeue-mixed.json", 6 if job.state == "RUNNING" else 7)
        doc.update(job_id=job.job_id, comment=job.comment, job_state=job.state, restart_cnt=job.restart_count,
                   node_count=job.nodes, submit_time=job.run.submit, start_time=job.run.start,
                   state_reason="None" if job.state == "RUNNING" else job.reason)
        return doc

    def _accounted(self, job: FakeJob, run: Run) -> dict[str, Any]:
        doc = recorded_job("sacct-mixed.json", 4)
        doc.update(job_id=job.job_id, allocation_nodes=job.nodes)
        doc["comment"]["job"] = job.comment
        doc["state"]["current"] = run.state
        doc["time"].update(submission=run.submit, start=run.start, end=run.end, elapsed=max(0, run.end - run.start))
        return doc


@dataclass
class Clock:
    """The daemon's injected clock, moved only by the test."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


ALICE = Caller(uid=1000, user="alice")
BOB = Caller(uid=1001, user="bob")
OPERATOR = Caller(uid=1002, user="olivia", operator=True)


class Core:
    """The daemon's core as ``hpcsched daemon`` wires it, over a fake Slurm and a moved clock."""

    def __init__(self, root: Path, jobs_dir: Path | None = None, store_dir: Path | None = None,
                 host: str = "login1") -> None:
        self.root = root
        self.clock = Clock()
        self.slurm = FakeSlurm(self.clock)
        self.store = Store(str((store_dir or root) / "store.sqlite"), host)
        self.client = SlurmClient(runner=self.slurm, clock=self.clock)
        self.settings = settings = Settings(state_dir=str(root / "state"), jobs_dir=str(jobs_dir or root / "jobs"),
                                            poll_interval=5.0, image="img", launcher_python=sys.executable, host=host)
        self.submitter = Submitter(self.store, self.client, settings, clock=self.clock)
        self.monitor = Monitor(self.store, self.client, self.submitter, settings.poll_interval, clock=self.clock)
        self.service = JobService(self.store, self.client, self.submitter, self.monitor, threading.Event(),
                                  clock=self.clock, state_dir=settings.state_dir)
        (root / "state").mkdir(mode=0o700, exist_ok=True)
        self.work = root / "work"
        self.work.mkdir(exist_ok=True)
        (self.work / "train.py").write_text("print('training')\n")

    def request(self, **options: Any) -> dict[str, Any]:
        return JobRequest.from_options({"script": str(self.work / "train.py"), "workdir": str(self.work),
                                        **options}).to_options()

    def accept(self, **options: Any) -> int:
        """A job of ALICE committed and not yet submitted (as the daemon finds it after a restart)."""
        return self.submitter.accept(JobRequest.from_options(self.request(**options)), ALICE.uid, ALICE.user)

    def tag(self, job_id: int, attempt: int = 1) -> str:
        return job_tag(self.store.store_id, job_id, attempt)

    def submit(self, caller: Caller = ALICE, **options: Any) -> tuple[int, int]:
        """A job of ``caller`` submitted to Slurm: (hpcsched id, Slurm id)."""
        job = self.service.op_run({"request": self.request(**options)}, caller)
        return int(job["id"]), int(job["slurm_job_id"])

    def cycle(self) -> int:
        """One monitor cycle once its next poll of Slurm is due (the clock moves forward to it)."""
        self.clock.now = max(self.clock.now, self.monitor.due)
        return self.monitor.poll_once()


@contextlib.contextmanager
def serving(core: Core, allowed: Callable[[int], bool] = lambda uid: uid == os.getuid(),
            is_operator: Callable[[int], bool] = lambda uid: False, read_timeout: float = 10.0) -> Iterator[str]:
    """The daemon's socket server on a real Unix socket, in a thread; yields the socket's path.
    The socket's folder lets other users in, for tests that connect as them (the daemon's own
    folder is private: bind_socket)."""
    folder = tempfile.mkdtemp(prefix="hpcsched-sock-")
    os.chmod(folder, 0o711)
    path = os.path.join(folder, "daemon.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    sock.listen(128)
    stop = threading.Event()
    server = Server(sock, core.service, allowed, is_operator, read_timeout=read_timeout)
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join()
        sock.close()
        os.unlink(path)
        os.rmdir(folder)


def answer(conn: socket.socket, request: bytes) -> dict[str, Any] | None:
    """Send raw bytes as one request on a connected socket (the end of input marks its end) and
    read the answer; None when the daemon closed the connection without one."""
    data = b""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused before all was sent
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
    with contextlib.suppress(ConnectionResetError):
        while chunk := conn.recv(65536):
            data += chunk
    return protocol.decode_response(data) if data else None


def ask(path: str, request: bytes) -> dict[str, Any] | None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        return answer(conn, request)


def call(path: str, op: str, **args: Any) -> dict[str, Any]:
    reply = ask(path, protocol.encode({"op": op, "args": args}))
    assert reply is not None, f"no answer to {op}"
    return reply
