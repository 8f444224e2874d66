"""A fake Slurm for the daemon's unit tests: a runner with ``run_slurm``'s signature that keeps
jobs in a dict, answers ``squeue``/``sacct`` in 22.05's JSON, and fails on request the way the
real commands do (a non-zero exit, a timeout), counting every call."""

from __future__ import annotations

import collections
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcsched.config import Settings
from hpcsched.daemon.store import Store
from hpcsched.daemon.submission import Submitter
from hpcsched.planning.request import JobRequest
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.runner import CommandResult, SlurmCommandError

META = {"plugin": {"type": "openapi/v0.0.38"}}
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}


@dataclass
class FakeJob:
    job_id: int
    comment: str
    state: str = "PENDING"
    submit_time: int = 1000


@dataclass
class FakeSlurm:
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    sbatch_fault: str = ""  # "queue_then_fail", "queue_then_time_out" or "reject"
    down: set[str] = field(default_factory=set)  # commands that time out
    next_id: int = 100

    def __call__(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 30.0) -> CommandResult:
        self.calls[argv[0]] += 1
        if argv[0] in self.down:
            raise SlurmCommandError(argv, None, "", "", why=f"no answer within {timeout:.0f} s")
        out = getattr(self, f"_{argv[0]}")(list(argv))
        return CommandResult(tuple(argv), out, "")

    def queue(self, comment: str, state: str = "PENDING") -> int:
        self.next_id += 1
        self.jobs[self.next_id] = FakeJob(self.next_id, comment, state)
        return self.next_id

    def tagged(self, comment: str) -> list[FakeJob]:
        return [j for j in self.jobs.values() if j.comment == comment]

    def _sbatch(self, argv: list[str]) -> str:
        script = Path(argv[-1]).read_text()
        match = re.search(r"^#SBATCH --comment=(\S+)$", script, re.M)
        assert match, "the batch script carries the job's tag"
        if self.sbatch_fault == "reject":
            raise SlurmCommandError(argv, 1, "", "sbatch: error: Invalid partition name specified\n")
        job_id = self.queue(match.group(1))
        if self.sbatch_fault == "queue_then_fail":
            raise SlurmCommandError(argv, 1, f"{job_id}\n", "wrapper: post-submit hook failed\n")
        if self.sbatch_fault == "queue_then_time_out":
            raise SlurmCommandError(argv, None, "", "", why="no answer within 60 s")
        return f"{job_id}\n"

    def _squeue(self, argv: list[str]) -> str:
        jobs = [{"job_id": j.job_id, "name": "t", "comment": j.comment, "job_state": j.state, "state_reason": "None",
                 "node_count": 1, "nodes": "node1", "submit_time": j.submit_time, "start_time": j.submit_time + 1,
                 "restart_cnt": 0, "user_name": "alice"} for j in self.jobs.values() if j.state not in FINAL]
        return json.dumps({"meta": META, "jobs": jobs})

    def _sacct(self, argv: list[str]) -> str:
        jobs = [{"job_id": j.job_id, "name": "t", "comment": {"job": j.comment},
                 "state": {"current": j.state, "reason": "None"}, "allocation_nodes": 1, "nodes": "node1",
                 "time": {"submission": j.submit_time, "start": j.submit_time + 1, "end": j.submit_time + 2},
                 "exit_code": {"return_code": 0}, "restart_cnt": 0} for j in self.jobs.values()]
        return json.dumps({"meta": META, "jobs": jobs})

    def _scancel(self, argv: list[str]) -> str:
        self.jobs[int(argv[-1])].state = "CANCELLED"
        return ""

    def _sinfo(self, argv: list[str]) -> str:
        return "node1 idle\nnode2 idle\nnode3 idle\n"


@dataclass
class Daemon:
    """The daemon's core over a fake Slurm: store, client and submitter, a clock that tests move."""

    root: Path
    store_dir: Path | None = None  # where the store lives, when not under root
    slurm: FakeSlurm = field(default_factory=FakeSlurm)
    now: list[float] = field(default_factory=lambda: [1000.0])

    def __post_init__(self) -> None:
        self.store = Store(str((self.store_dir or self.root) / "store.sqlite"))
        self.client = SlurmClient(runner=self.slurm)
        self.settings = Settings(state_dir=str(self.root / "state"), jobs_dir=str(self.root / "jobs"), poll_interval=5.0,
                                 image="img", launcher_python=sys.executable)
        self.submitter = Submitter(self.store, self.client, self.settings, clock=self.clock)
        (self.root / "work").mkdir(exist_ok=True)
        (self.root / "work" / "train.py").write_text("print('hi')\n")

    def clock(self) -> float:
        return self.now[0]

    def accept(self, **options: Any) -> int:
        work = self.root / "work"
        request = JobRequest.from_options({"script": str(work / "train.py"), "workdir": str(work), **options})
        return self.submitter.accept(request, uid=1000, user="alice")

    def tag(self, job_id: int, attempt: int = 1) -> str:
        suffix = "" if attempt == 1 else f":a{attempt}"
        return f"hpcsched:{self.store.store_id}:{job_id}{suffix}"
