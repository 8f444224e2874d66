"""Reliability on the login and compute hosts: a state directory another user cannot hijack (G5),
a rendezvous port that never fails a job (C4), group-shared project directories as the work
directory (reliability items 5, 8 and 10)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, FINAL, LOGIN_HOST, UserSession, copy_example
from test_elastic import final_accuracy, running_attempt

OTHER_USER = os.environ.get("HPCSCHED_USER2", "hpcuser2")
PROJECT_GROUP = "hpcproj"  # cluster/localcluster puts the cluster user in it
PORT_BASE, PORT_SPAN = 20000, 10000  # the first guess: 20000 + Slurm job id mod 10000


def other_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        pytest.fail(f"user {OTHER_USER} missing: cluster/localcluster start creates it")


def plant(path: Path, target: Path, owner: pwd.struct_passwd) -> None:
    path.symlink_to(target)
    os.lchown(path, owner.pw_uid, owner.pw_gid)


# --- G5: the state directory ---------------------------------------------------------------------


def test_G5_state_directory_another_user_prepared_is_refused_and_nothing_is_written_through_its_link(
        session: UserSession) -> None:
    other = other_user()
    victim = session.write("victim.txt", "precious data\n")
    shared = session.root / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)  # like /tmp
    trap = shared / "state"
    trap.mkdir(mode=0o777)
    trap.chmod(0o777)
    os.chown(trap, other.pw_uid, other.pw_gid)
    plant(trap / f"daemon-{LOGIN_HOST}.lock", victim, other)
    proc = session.hs("status", check=False, env={"HPCSCHED_STATE_DIR": str(trap)})
    assert proc.returncode != 0
    assert f"state directory {trap} (owner {OTHER_USER}, mode 0777) belongs to another user" in proc.stderr
    assert victim.read_text() == "precious data\n"

    linked = shared / "linked-state"
    plant(linked, trap, other)
    proc = session.hs("status", check=False, env={"HPCSCHED_STATE_DIR": str(linked)})
    assert proc.returncode != 0 and f"{linked} is a symbolic link" in proc.stderr
    assert victim.read_text() == "precious data\n"


def test_G5_lock_link_planted_in_the_state_directory_leaves_the_victim_untouched(session: UserSession) -> None:
    victim = session.write("victim.txt", "precious data\n")
    session.state_dir.chmod(0o700)
    plant(session.daemon_file("lock"), victim, pwd.getpwnam("root"))
    proc = session.hs("status", check=False)
    assert proc.returncode != 0
    assert f"{session.daemon_file('lock')} is a symbolic link (to {victim}" in proc.stderr
    assert victim.read_text() == "precious data\n"


# --- C4: the rendezvous port ---------------------------------------------------------------------


def last_slurm_id() -> int:
    out = subprocess.run(["sacct", "-a", "-X", "-n", "-P", "-o", "JobIDRaw", "-S", "now-7days"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    queued = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60, check=True).stdout
    return max([int(x) for x in re.findall(r"^(\d+)", out + queued, re.M)] or [0])


@pytest.fixture
def busy_ports() -> Iterator[set[int]]:
    """Listeners on the first-guess ports of the next Slurm jobs (all emulated nodes are this host)."""
    after = last_slurm_id()
    held: list[socket.socket] = []
    for slurm_id in range(after + 1, after + 200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("", PORT_BASE + slurm_id % PORT_SPAN))
            s.listen()
            held.append(s)
        except OSError:
            s.close()
    yield {s.getsockname()[1] for s in held}
    for s in held:
        s.close()


def test_C4_ports_held_by_another_process_never_fail_two_jobs_of_one_user_at_once(
        session: UserSession, busy_ports: set[int]) -> None:
    copy_example(session, "allreduce.py")
    jobs = [session.run_job("allreduce.py", "--nodes", "1", "--procs-per-node", "2") for _ in range(2)]
    infos = [session.wait(job, timeout=300) for job in jobs]
    first_guesses = {PORT_BASE + int(info["slurm_job_id"]) % PORT_SPAN for info in infos}
    assert first_guesses & busy_ports, f"the jobs' own ports {first_guesses} were not held: the test proved nothing"
    for job, info in zip(jobs, infos, strict=True):
        log = session.logs(job)
        assert info["state"] == "COMPLETED", log
        ports = {int(p) for p in re.findall(r"rendezvous port (\d+)", log)}
        assert ports and not ports & busy_ports, ports


# What a node of another job runs when that job's first node found its port taken before torchrun
# listened on it, and this job's torchrun listens there: torchrun as node 1 of 2 against the port.
# Its worker only leaves a mark that it was started.
STRAY_WORKER = "import pathlib, sys\npathlib.Path(sys.argv[1]).write_text('started in the other job')\n"
HOST_TORCHRUN = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "torchrun"


def test_C4_another_jobs_node_that_reaches_this_jobs_port_never_joins_its_training(session: UserSession) -> None:
    # Seen in `make long`: two multi-node jobs started together on one node met on one port; the
    # second job's other nodes joined the first job's rendezvous (torchrun's default id is the same
    # for every job), took its ranks 1 and 2, and the first job's ranks failed.
    copy_example(session, "digits_cnn.py")
    job = session.run_job("digits_cnn.py", "--nodes", "2", "--", "--epochs", "40", "--step-delay", "0.05")
    running_attempt(session, job, 1, nodes=2, min_steps=3)
    port = int(re.findall(r"rendezvous port (\d+)", session.logs(job))[-1])
    worker, mark = session.write("stray.py", STRAY_WORKER), session.root / "work" / "stray-started"
    stray = subprocess.Popen([str(HOST_TORCHRUN), "--nnodes=2", "--node-rank=1", "--nproc-per-node=1",
                              "--master-addr=127.0.0.1", f"--master-port={port}", "--max-restarts=0",
                              str(worker), str(mark)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stray.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stray.kill()  # it waits for ranks under its own rendezvous id, which nobody gives it
    output = stray.communicate()[0]
    assert not mark.exists(), f"the other job's node started a worker in this job's rendezvous:\n{output[-2000:]}"
    info = session.wait(job, timeout=600)
    assert info["state"] == "COMPLETED", session.logs(job)
    assert final_accuracy(session, job) >= 0.9


# --- group-shared work directory -----------------------------------------------------------------


def run_as_member(session: UserSession, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hpcsched`` as the user with the project group among its supplementary groups, as after login."""
    return subprocess.run([CLI, *args], user=session.user, group=session.user,
                          extra_groups=[grp.getgrnam(PROJECT_GROUP).gr_gid], env=session.env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=120)


def test_group_shared_project_directory_works_as_the_work_directory(session: UserSession) -> None:
    assert PROJECT_GROUP in [g.gr_name for g in grp.getgrall() if session.user in g.gr_mem], \
        f"{session.user} is not in {PROJECT_GROUP}: cluster/localcluster start puts it there"
    project = session.root / "project"
    project.mkdir()
    os.chown(project, 0, grp.getgrnam(PROJECT_GROUP).gr_gid)
    project.chmod(0o2770)
    script = project / "train.py"
    script.write_text("import os\nopen('result.txt', 'w').write('written from ' + os.getcwd())\nprint('trained')\n")
    os.chown(script, 0, grp.getgrnam(PROJECT_GROUP).gr_gid)
    script.chmod(0o640)
    proc = run_as_member(session, project, "run", "--json", "train.py", "--nodes", "1")
    assert proc.returncode == 0, proc.stderr
    job = int(json.loads(proc.stdout)["id"])
    info = session.wait(job, FINAL, timeout=240)
    assert info["state"] == "COMPLETED", session.logs(job)
    assert (project / "result.txt").read_text() == f"written from {project}"


# --- a work directory only the login node has --------------------------------------------------


def test_a_work_directory_only_the_login_node_has_fails_the_job_naming_it(session: UserSession) -> None:
    # The CLI and the daemon it starts run in a mount namespace of their own with a tmpfs at the
    # work directory: they see it, the compute nodes (the slurmds) do not, as with a login node's /tmp.
    mount_point = session.root / "login-only"  # the compute nodes see this empty directory ...
    mount_point.mkdir()
    private = mount_point / "project"  # ... and not this one, made inside the tmpfs
    owner = pwd.getpwnam(session.user)
    example = Path(__file__).resolve().parents[2] / "examples" / "allreduce.py"
    env = " ".join(shlex.quote(f"{k}={v}") for k, v in session.env.items())
    where, there = shlex.quote(str(mount_point)), shlex.quote(str(private))
    script = (f"mount -t tmpfs -o size=1m,mode=0755 tmpfs {where} && mkdir {there} && "
              f"cp {shlex.quote(str(example))} {there}/allreduce.py && "
              f"chown -R {owner.pw_uid}:{owner.pw_gid} {where} && cd {there} && "
              f"exec runuser -u {session.user} -- env -i {env} {CLI} run --json allreduce.py --nodes 1")
    submitted = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                               capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    job = int(json.loads(submitted.stdout)["id"])
    info = session.wait(job, timeout=180)
    log = session.logs(job)
    assert info["state"] == "FAILED", log
    assert f"the work directory {private} does not exist on node" in log, log
    assert "submit from a directory on a file system every node mounts" in log
