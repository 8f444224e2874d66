"""Integration tests against the real local cluster (cluster/localcluster start).

Tests run as root and act as the ordinary cluster user (hpcuser by default) through the
installed CLI, exactly as a user would; each test gets its own daemon state and jobs directory.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

USER = os.environ.get("HPCSCHED_USER", "hpcuser")
SITE_VENV = os.environ.get("HPCSCHED_SITE_VENV", "/opt/hpcsched/venv")
CLI = os.environ.get("HPCSCHED_CLI", f"{SITE_VENV}/bin/hpcsched")
BASE = Path(os.environ.get("HPCSCHED_TEST_BASE", "/tmp/hpcsched-it"))
# The login node the sessions' daemons run on (test_login_nodes.py starts a second one beside it).
LOGIN_HOST = "login1"
# The cluster's node names are NODE_PREFIX1..11: "node" on the host's cluster, "cnode" in a chroot
# cluster of cluster/compat-cluster (cluster/compat-suite sets it).
NODE_PREFIX = os.environ.get("HPCSCHED_TEST_NODE_PREFIX", "node")
REPO = Path(__file__).resolve().parents[2]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"}
# The sessions of the test that runs now: a failed test's report carries the end of their logs,
# and a copy of each session's job directories is kept under KEPT (end_session removes them).
LIVE: list[UserSession] = []
LOG_TAIL_LINES = 80
KEPT = Path(os.environ.get("HPCSCHED_TEST_KEPT", "/tmp/hpcsched-it-failed"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and report.when == "call":
        for s in LIVE:
            kept = keep_logs(s)
            report.sections.append((f"logs of {s.user}'s session {s.root.name} (whole, in {kept})", session_logs(s)))


def keep_logs(session: UserSession) -> Path:
    """Copy the session's log files (their folders' layout kept) under KEPT; returns where."""
    kept = KEPT / session.root.name
    for path in [*(session.root / "jobs").glob("*/*.log"), *(session.root / "jobs").glob("*/*.out"),
                 *(session.root / "state").glob("*.log")]:
        target = kept / path.relative_to(session.root)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        except OSError:
            pass  # a log that cannot be copied is still in the report's tail
    return kept


def session_logs(session: UserSession) -> str:
    """The last lines of every log of a session: Slurm's output, each attempt's, the daemon's."""
    jobs, state = session.root / "jobs", session.root / "state"
    files = [*sorted(jobs.glob("*/slurm-*.out")), *sorted(jobs.glob("*/attempt-*.log")), *sorted(state.glob("daemon-*.log"))]
    parts = []
    for path in files:
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError as e:
            lines = [f"(unreadable: {e})"]
        parts.append("\n".join([f"==> {path} <==", *lines]))
    return "\n".join(parts) or "(no log files)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> None:
    """The local cluster must be up: a missing cluster fails the tests, it never skips them."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"Slurm is not running (start it with cluster/localcluster start): {out.stderr}"
    states = dict(line.split() for line in out.stdout.splitlines())
    assert len(states) >= 3, f"expected 3 emulated nodes, got {states}"
    assert os.geteuid() == 0, "integration tests run as root and act as the cluster user"
    assert Path(CLI).exists(), f"{CLI} missing: run scripts/setup"


@dataclass
class UserSession:
    """One user's view of hpcsched: own state dir, jobs dir and work directory."""

    user: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def daemon_file(self, suffix: str, host: str = LOGIN_HOST) -> Path:
        """The daemon's socket, lock or log of login node ``host``: ``daemon_file("sock")``."""
        return self.state_dir / f"daemon-{host}.{suffix}"

    def hs(self, *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the installed ``hpcsched`` CLI as the user."""
        proc = subprocess.run(
            [CLI, *args], user=self.user, group=self.user, extra_groups=[], env={**self.env, **(env or {})},
            cwd=str(cwd or self.workdir), capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"hpcsched {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def as_user(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, user=self.user, group=self.user, extra_groups=[], env=self.env,
                              cwd=str(self.workdir), capture_output=True, text=True, timeout=timeout)

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        _chown_tree(path, self.user)
        return path

    def status(self, job: int) -> dict[str, Any]:
        return dict(json.loads(self.hs("status", str(job), "--json").stdout)[0])

    def wait(self, job: int, states: set[str] | None = None, timeout: float = 180) -> dict[str, Any]:
        """Poll ``status`` until the job reaches one of ``states`` (default: any final state)."""
        wanted = states or FINAL
        deadline = time.monotonic() + timeout
        info = self.status(job)
        while info["state"] not in wanted and time.monotonic() < deadline:
            time.sleep(0.5)
            info = self.status(job)
        assert info["state"] in wanted, f"job {job} is {info['state']} after {timeout} s, wanted {wanted}: {info}"
        return info

    def logs(self, job: int, attempt: int | None = None) -> str:
        args = ["logs", str(job)] + (["--attempt", str(attempt)] if attempt else [])
        return self.hs(*args).stdout

    def run_job(self, *args: str) -> int:
        out = self.hs("run", "--json", *args)
        return int(json.loads(out.stdout)["id"])


def _chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


def make_session(user: str) -> UserSession:
    root = BASE / uuid.uuid4().hex[:8]
    (root / "work").mkdir(parents=True)
    (root / "state").mkdir()
    (root / "jobs").mkdir()
    os.chmod(BASE, 0o755)
    _chown_tree(root, user)
    pw = pwd.getpwnam(user)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
        "HPCSCHED_STATE_DIR": str(root / "state"), "HPCSCHED_JOBS_DIR": str(root / "jobs"),
        "HPCSCHED_POLL_INTERVAL": "1", "HPCSCHED_HOST": LOGIN_HOST,
    }
    session = UserSession(user=user, root=root, env=env)
    LIVE.append(session)
    return session


def end_session(session: UserSession) -> None:
    """Stop the session's daemon and cancel whatever Slurm still runs for it."""
    session.hs("daemon", "stop", check=False, timeout=60)
    for job_dir in (session.root / "jobs").glob("*"):
        for out in job_dir.glob("slurm-*.out"):
            slurm_id = out.stem.split("-", 1)[1]
            subprocess.run(["scancel", slurm_id], capture_output=True, timeout=30)
    # Jobs that never started have no output file: those whose batch script lies in the session.
    listed = subprocess.run(["squeue", "-h", "-u", session.user, "-o", "%i|%o"], capture_output=True, text=True,
                            timeout=30).stdout.splitlines()
    mine = [line.split("|", 1)[0] for line in listed if line.partition("|")[2].startswith(f"{session.root}/")]
    if mine:
        subprocess.run(["scancel", *mine], capture_output=True, timeout=30)
    # Processes on a node whose slurmd a test killed are not cleaned up by Slurm: end them here.
    subprocess.run(["pkill", "-KILL", "-f", str(session.root)], capture_output=True, timeout=30)
    shutil.rmtree(session.root, ignore_errors=True)
    if session in LIVE:
        LIVE.remove(session)


@pytest.fixture
def session(cluster: None) -> Iterator[UserSession]:
    s = make_session(USER)
    yield s
    end_session(s)


def node(index: int) -> str:
    """The name of the cluster's node ``index`` (1-11): node3 on the host's cluster."""
    return f"{NODE_PREFIX}{index}"


def local_pids(*pgrep_args: str) -> list[int]:
    """``pgrep``'s matches among the processes whose root directory is this one's: a chroot cluster
    of cluster/compat-cluster shares the machine's process table, and its daemons have the same
    names as the host cluster's, so a test never signals the other cluster's."""
    found = subprocess.run(["pgrep", *pgrep_args], capture_output=True, text=True, timeout=30).stdout.split()
    ours = os.stat("/proc/self/root")
    pids = []
    for pid in map(int, found):
        try:
            root = os.stat(f"/proc/{pid}/root")
        except OSError:
            continue  # gone, or not ours to inspect
        if (root.st_dev, root.st_ino) == (ours.st_dev, ours.st_ino):
            pids.append(pid)
    return pids


def signal_local(sig: int, *pgrep_args: str) -> int:
    """Send ``sig`` to ``local_pids(*pgrep_args)``; how many were signalled."""
    sent = 0
    for pid in local_pids(*pgrep_args):
        try:
            os.kill(pid, sig)
            sent += 1
        except ProcessLookupError:
            pass
    return sent


def copy_example(session: UserSession, name: str) -> Path:
    return session.write(name, (REPO / "examples" / name).read_text())
