"""Cases of the fault catalogue (docs/reliability.md) that no other test file holds, each against
the real local cluster: a controller that stops answering and restarts (B1), a job held by an
administrator (B6), a training process killed by a signal (E6), a planted checkpoint that would
run code if unpickled (G6), a daemon that cannot start (A6, personal mode), a slow Slurm (H4), a
requeued job (B5), a user without subordinate ids (E4) and full container storage (C3).
B1 stops and restarts the cluster's slurmctld: run this file on its own cluster, as CI does."""

from __future__ import annotations

import json
import os
import pickle
import pwd
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from conftest import UserSession, _chown_tree, end_session, local_pids, make_session, signal_local
from test_reliability_submission import wrappers

SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(300)\n"


def test_B6_a_job_held_by_an_administrator_shows_as_held_with_the_reason(session: UserSession) -> None:
    session.write("sleeper.py", SLEEPER)
    job = session.run_job("sleeper.py", "--nodes", "1", "--sbatch=--begin=now+1hour")
    slurm_id = session.wait(job, {"PENDING"}, timeout=60)["slurm_job_id"]
    subprocess.run(["scontrol", "hold", str(slurm_id)], check=True, timeout=30)
    try:
        session.hs("daemon", "status")  # any request wakes the monitor, which asks Slurm at once
        info = session.wait(job, {"PENDING"}, timeout=60)
        deadline_checks = 0
        while "JobHeldAdmin" not in (info.get("reason") or "") and deadline_checks < 60:
            deadline_checks += 1
            subprocess.run(["sleep", "1"], check=True)
            info = session.status(job)
        assert info["state"] == "PENDING" and "JobHeldAdmin" in info["reason"], info
        table = session.hs("status", str(job)).stdout
        assert "held by an administrator" in table, table
    finally:
        subprocess.run(["scancel", str(slurm_id)], capture_output=True, timeout=30)


def test_E6_a_training_process_killed_by_a_signal_is_reported_failed_never_success(session: UserSession) -> None:
    session.write("killed.py", "import os, signal\nprint('dying', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    job = session.run_job("killed.py", "--nodes", "1")
    info = session.wait(job, timeout=180)
    assert info["state"] == "FAILED", info
    assert info["exit_code"] not in (0, None), info
    assert "dying" in session.logs(job)


class Planted:
    """Unpickling this creates the file named by ``marker``: proof that someone loaded it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch {self.marker}",))


def test_G6_a_checkpoint_crafted_to_run_code_is_never_loaded_by_the_daemon_or_the_cli(session: UserSession) -> None:
    session.write("sleeper.py", SLEEPER)
    job = session.run_job("sleeper.py", "--nodes", "1")
    info = session.wait(job, {"RUNNING"}, timeout=120)
    marker = session.root / "unpickled"
    checkpoints = Path(info["job_dir"]) / "checkpoints"
    step = checkpoints / "step-0000000100"  # the runtime library's layout (hpcsched/runtime/checkpoint.py)
    step.mkdir(parents=True, exist_ok=True)
    for name in ("state.pt", "manifest.json"):
        (step / name).write_bytes(pickle.dumps(Planted(str(marker))))
    _chown_tree(checkpoints, session.user)
    for args in (["rebalance", "--dry-run"], ["status", str(job)], ["model", str(job)], ["report", "--since", "1h"]):
        session.hs(*args, check=False)
    session.hs("cancel", str(job), "--wait")
    assert not marker.exists(), "a command unpickled the planted checkpoint"


def test_A6_a_daemon_that_cannot_start_fails_run_fast_with_the_reason_and_writes_nothing(session: UserSession) -> None:
    session.write("ok.py", "print('ok')\n")
    blocked = session.root / "not-a-dir"
    blocked.write_text("a file where the state directory should be\n")
    _chown_tree(blocked, session.user)
    proc = session.hs("run", "ok.py", "--nodes", "1", check=False, timeout=60,
                      env={"HPCSCHED_STATE_DIR": str(blocked / "state")})
    assert proc.returncode != 0
    assert str(blocked) in proc.stderr, proc.stderr
    assert not any((session.root / "jobs").iterdir()), "nothing may be written for a job that was not accepted"
    jobs = json.loads(session.hs("status", "--json").stdout)
    assert jobs == []


def test_H4_a_slow_slurm_keeps_the_daemon_answering_and_submissions_persisted(session: UserSession) -> None:
    """Every Slurm command takes seconds (squeue and sacct 20 s, sbatch 3 s): status is answered
    from the store meanwhile, and a job sent during it is recorded and reaches Slurm once."""
    session.write("ok.py", "print('ok', flush=True)\n")
    env = wrappers(session, sbatch='sleep 3; exec {real} "$@"', squeue='sleep 20; exec {real} "$@"',
                   sacct='sleep 20; exec {real} "$@"')
    session.hs("daemon", "start", env=env)
    job = session.run_job("ok.py", "--nodes", "1")
    for _ in range(3):  # the monitor is inside a 20 s squeue most of this time
        listed = session.hs("status", "--json", timeout=15)
        assert [j["id"] for j in json.loads(listed.stdout)] == [job]
    info = session.wait(job, timeout=300)
    assert info["state"] == "COMPLETED" and info["slurm_job_id"] is not None, info
    assert len({a["slurm_job_id"] for a in info["attempts"]}) == 1


def restart_slurmctld() -> None:
    """Stop the controller, wait until it is gone, start it again and wait until it answers."""
    assert signal_local(signal.SIGTERM, "-x", "slurmctld") == 1, "no slurmctld of this cluster runs"
    for _ in range(100):
        if not local_pids("-x", "slurmctld"):
            break
        subprocess.run(["sleep", "0.2"], check=True)
    assert subprocess.run(["squeue"], capture_output=True, timeout=60).returncode != 0, "slurmctld still answers"
    subprocess.run(["/usr/sbin/slurmctld"], check=True, timeout=60)
    for _ in range(150):
        if "UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30).stdout:
            return
        subprocess.run(["sleep", "0.2"], check=True)
    raise AssertionError("slurmctld did not come back")


def test_B1_a_running_job_stays_tracked_across_a_slurmctld_restart(session: UserSession) -> None:
    session.write("steady.py", "import time\nprint('up', flush=True)\ntime.sleep(25)\nprint('done', flush=True)\n")
    job = session.run_job("steady.py", "--nodes", "1")
    slurm_id = session.wait(job, {"RUNNING"}, timeout=120)["slurm_job_id"]
    assert signal_local(signal.SIGSTOP, "-x", "slurmctld") == 1  # an unresponsive controller
    try:
        session.hs("daemon", "status")  # wakes the monitor: it asks the silent controller now
        during = [session.status(job)["state"] for _ in range(3)]
    finally:
        signal_local(signal.SIGCONT, "-x", "slurmctld")
    assert all(state == "RUNNING" for state in during), during
    restart_slurmctld()
    info = session.wait(job, timeout=240)
    assert info["state"] == "COMPLETED" and info["slurm_job_id"] == slurm_id, info
    assert len(info["attempts"]) == 1 and "done" in session.logs(job)


def eventually(check: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(1)


def test_B5_a_job_requeued_twice_has_one_record_and_one_log_per_attempt(session: UserSession) -> None:
    session.write("steady.py", "import os, time\nprint('attempt', os.environ.get('HPCSCHED_ATTEMPT'), flush=True)\n"
                  "time.sleep(600)\n")
    job = session.run_job("steady.py", "--nodes", "1")
    try:
        for number in (1, 2):
            eventually(lambda n=number: f"attempt {n}" in session.logs(job, n), f"attempt {number} running")
            subprocess.run(["scontrol", "requeue", str(session.status(job)["slurm_job_id"])], check=True, timeout=30)
            eventually(lambda n=number: len(session.status(job)["attempts"]) == n + 1, f"attempt {number + 1} recorded")
        eventually(lambda: "attempt 3" in session.logs(job, 3), "attempt 3 running")
        info = session.status(job)
        assert [a["number"] for a in info["attempts"]] == [1, 2, 3], info
        assert len({a["slurm_job_id"] for a in info["attempts"]}) == 1, "one Slurm job, run three times"
        assert len({a["log_path"] for a in info["attempts"]}) == 3
        assert all(f"attempt {n}" in session.logs(job, n) for n in (1, 2, 3)), "every attempt's log is kept"
    finally:
        session.hs("cancel", str(job), "--wait", check=False)


NO_SUBUID_USER = "hpcnosub"


def test_E4_a_user_without_subordinate_ids_is_told_to_ask_the_admin(cluster: None) -> None:
    """Rootless Podman cannot start for a user without /etc/subuid and /etc/subgid ranges: the job
    fails with the reason on the node, not with Podman's own error."""
    if subprocess.run(["id", NO_SUBUID_USER], capture_output=True).returncode == 0:
        subprocess.run(["userdel", "-r", NO_SUBUID_USER], capture_output=True, timeout=60)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0",
                    NO_SUBUID_USER], check=True, timeout=60)
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as f:
            assert not any(line.startswith(f"{NO_SUBUID_USER}:") for line in f), f"{NO_SUBUID_USER} has a range in {path}"
    session = make_session(NO_SUBUID_USER)
    try:
        session.write("ok.py", "print('ok')\n")
        job = session.run_job("ok.py", "--nodes", "1")
        info = session.wait(job, timeout=180)
        assert info["state"] == "FAILED", info
        assert f"no subordinate UIDs/GIDs for user {NO_SUBUID_USER}" in session.logs(job)
        assert "ask your admin" in session.logs(job)
    finally:
        end_session(session)


def test_C3_full_node_local_container_storage_fails_the_job_naming_the_node(session: UserSession) -> None:
    """The user's Podman storage is pointed at a full 1 MiB file system for the length of one job:
    the launcher refuses to start the container and says which node and how much is free. (It
    changes hpcuser's storage.conf for a few seconds: CI runs the tests one at a time.)"""
    full = session.root / "full-disk"
    full.mkdir()
    account = pwd.getpwnam(session.user)
    # Mounted where the compute nodes' slurmd live: their mount namespace may not be this one, nor
    # the same for every node (a slurmd restarted by a test from .ci/run's private namespace).
    namespaces = {os.readlink(f"/proc/{pid}/ns/mnt"): pid for pid in local_pids("-x", "slurmd")}
    in_nodes = [["nsenter", "--target", str(pid), "--mount", "--"] for pid in namespaces.values()]
    for enter in in_nodes:
        subprocess.run([*enter, "mount", "-t", "tmpfs", "-o", f"size=1m,mode=0700,uid={account.pw_uid},gid={account.pw_gid}",
                        "hpcsched-full", str(full)], check=True, timeout=30)
    conf = Path(account.pw_dir) / ".config" / "containers" / "storage.conf"
    original = conf.read_text()
    try:
        conf.write_text(original.replace("graphroot = ", f'graphroot = "{full}/graph"\n# was: graphroot = '))
        session.write("ok.py", "print('ok')\n")
        job = session.run_job("ok.py", "--nodes", "1")
        info = session.wait(job, timeout=180)
    finally:
        conf.write_text(original)
        for enter in in_nodes:
            subprocess.run([*enter, "umount", str(full)], capture_output=True, timeout=30)
    assert info["state"] == "FAILED", info
    log = session.logs(job)
    assert f"node-local storage full on {info['node_list']}" in log and f"{full}/graph" in log, log
