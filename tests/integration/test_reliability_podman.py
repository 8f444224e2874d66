"""Podman's own state on a node after a job was killed hard: Slurm's cgroup kill at a time limit,
the OOM killer or a lost session take the container, its conmon and Podman's pause process with
them, and Podman's state still names the container as running. Every podman command of the user's
then fails ("invalid internal status ... podman system migrate") until it is reset; the next job of
that user on the node must run all the same, say what was repaired, and remove the killed job's
container."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

from conftest import UserSession, copy_example

IMAGE = "localhost/hpcsched-train:latest"


def podman(session: UserSession, *args: str) -> subprocess.CompletedProcess[str]:
    return session.as_user(["podman", *args], timeout=120)


def kill_container_with_its_conmon_and_pause_process(session: UserSession, name: str) -> None:
    started = podman(session, "run", "--detach", "--network", "host", "--name", name, "--label", "org.hpcsched.job=999999",
                     IMAGE, "sleep", "600")
    assert started.returncode == 0, started.stderr
    pids = podman(session, "inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", name)
    assert pids.returncode == 0, pids.stderr
    pause = subprocess.run(["pgrep", "-u", session.user, "-x", "podman pause"], capture_output=True, text=True,
                           timeout=30).stdout.split()
    assert pause, "no pause process of the user's: Podman did not run rootless as expected"
    for pid in [*map(int, pids.stdout.split()), *map(int, pause)]:
        os.kill(pid, signal.SIGKILL)


def test_a_job_after_one_killed_with_its_podman_processes_runs_and_says_podman_was_reset(
        session: UserSession) -> None:
    name = f"hpcsched-killed-{uuid.uuid4().hex[:8]}"
    try:
        kill_container_with_its_conmon_and_pause_process(session, name)
        broken = podman(session, "container", "ls")
        assert broken.returncode != 0 and "system migrate" in broken.stderr, (
            f"killing the container's processes did not leave Podman's state stale: the test proved nothing: "
            f"{broken.stderr}")
        copy_example(session, "allreduce.py")
        job = session.run_job("allreduce.py", "--nodes", "1", "--procs-per-node", "1")
        info = session.wait(job, timeout=300)
        log = session.logs(job)
        assert info["state"] == "COMPLETED", log
        assert "resetting it with `podman system migrate`" in log, log
        left = podman(session, "container", "ls", "--all", "--filter", f"name={name}", "--format", "{{.Names}} {{.Status}}")
        assert left.returncode == 0 and left.stdout.strip() == "", f"the killed job's container was left: {left.stdout}"
        assert "stopped container(s) of killed hpcsched jobs" in log, log
    finally:
        podman(session, "rm", "--force", "--ignore", name)
