"""Site mode on the real cluster: the coordinator under its service account, users' daemons as
its agents, and users who have never heard of hpcsched (issue: site mode, item 6)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, REPO, SITE_VENV, UserSession, copy_example, end_session, make_session
from test_elastic import DIGITS, running_attempt, wait_for

SOCKET = "/run/hpcsched-site/coordinator.sock"
OTHER = "hpcuser2"  # a user without hpcsched: plain sbatch


@pytest.fixture(scope="module")
def coordinator(cluster: None) -> str:
    subprocess.run([str(REPO / "cluster" / "site-coordinator"), "start"], check=True, capture_output=True, timeout=60)
    return SOCKET


@pytest.fixture
def alice(coordinator: str) -> Iterator[UserSession]:
    s = make_session("hpcuser")
    s.env["HPCSCHED_COORDINATOR_SOCKET"] = coordinator
    yield s
    end_session(s)


def coordinator_ctl(action: str, fault: str = "", grow_stall: str = "") -> None:
    """``cluster/site-coordinator ACTION``; ``fault``: a fault point, ``grow_stall``: ``--grow-stall``."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HPCSCHED_SITE_FAULT": fault}
    subprocess.run([str(REPO / "cluster" / "site-coordinator"), action], check=True, capture_output=True, timeout=120,
                   env=env | ({"HPCSCHED_SITE_GROW_STALL": grow_stall} if grow_stall else {}))


def coordinator_running() -> bool:
    return subprocess.run([str(REPO / "cluster" / "site-coordinator"), "status"], capture_output=True).returncode == 0


def slurm_job(slurm_id: int) -> tuple[str, int]:
    """(state, node count) of a Slurm job; ("", 0) once it left the queue."""
    out = subprocess.run(["squeue", "-h", "-j", str(slurm_id), "-o", "%T %D"], capture_output=True, text=True).stdout.split()
    return (out[0], int(out[1])) if len(out) == 2 else ("", 0)


def plain_sbatch(user: str, nodes: int, seconds: int, partition: str = "", limit: str = "") -> int:
    """A plain Slurm job of a user who does not use hpcsched (``limit``: its ``--time``)."""
    where = [f"--partition={partition}"] if partition else []
    where += [f"--time={limit}"] if limit else []
    out = subprocess.run(["sbatch", "--parsable", f"--nodes={nodes}", *where, "--output=/dev/null", f"--wrap=sleep {seconds}"],
                         user=user, group=user, cwd="/tmp", capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout.strip().split(";")[0])


def audit() -> list[dict[str, object]]:
    out = subprocess.run([CLI, "site", "audit", "--json", "--socket", SOCKET],
                         user="hpcsite", group="hpcsite", cwd="/", capture_output=True, text=True, check=True, timeout=60)
    entries: list[dict[str, object]] = json.loads(out.stdout)
    return entries


def owners_of_processes(marker: str) -> set[str]:
    """The users of every process whose command line mentions ``marker``."""
    out = subprocess.run(["ps", "-eww", "-o", "user:32,args"], capture_output=True, text=True, check=True).stdout
    return {line.split(None, 1)[0] for line in out.splitlines()[1:] if marker in line and "ps -eww" not in line}


def test_G4_the_coordinator_shrinks_a_job_for_another_users_plain_job_while_its_owner_is_away(
        alice: UserSession) -> None:
    """G4 and site mode's good citizen: the coordinator (service account) makes room for a plain
    sbatch job of another user while the elastic job's owner has no daemon; the job's processes
    and containers run as the owner throughout, the coordinator as its service account."""
    copy_example(alice, "digits_cnn.py")
    job = alice.run_job("digits_cnn.py", "--nodes", "1-3", "--start-nodes", "3", "--", "--epochs", "400", *DIGITS)
    running_attempt(alice, job, 1, nodes=3, min_steps=5)
    slurm_id = int(alice.status(job)["attempts"][0]["slurm_job_id"])
    since = time.time()
    wait_for(lambda: any(d.get("slurm_job_id") == slurm_id for d in json.loads(
        alice.hs("site", "status", "--json").stdout)["decisions"]), 60, "the coordinator to know the elastic job")
    alice.hs("daemon", "stop")  # alice's login node is gone: the decision must still happen

    other = plain_sbatch(OTHER, nodes=2, seconds=20)
    try:
        submitted = time.monotonic()
        wait_for(lambda: slurm_job(other)[0] in ("RUNNING", "COMPLETING", ""), 120, "the plain job to start")
        started_after = time.monotonic() - submitted
        assert slurm_job(slurm_id) == ("RUNNING", 1), "the elastic job went on, in place, on one node"
        assert owners_of_processes(str(alice.root / "jobs")) == {"hpcuser"}, "the job runs as its owner, nothing as root"
        assert owners_of_processes("hpcsched site coordinator") == {"hpcsite"}
    finally:
        subprocess.run(["scancel", str(other)], capture_output=True)
    print(f"plain job started {started_after:.1f} s after submission")
    entries = [e for e in audit() if float(str(e["time"])) >= since and e.get("slurm_job_id") == slurm_id]
    decided = [e for e in entries if e["event"] == "decided"]
    assert decided and decided[0]["action"] == "shrink" and decided[0]["user"] == "hpcuser", entries
    assert str(other) in str(decided[0]["reason"]), "the audit log says whom the shrink made room for"

    alice.hs("daemon", "start")  # back: the daemon learns what happened from the job's own records
    wait_for(lambda: len(alice.status(job)["attempts"]) >= 2, 60, "the daemon to record the shrink")
    attempts = alice.status(job)["attempts"]
    assert [(a["reason"], a["nodes"]) for a in attempts[:2]] == [("submit", 3), ("resize", 1)], attempts
    assert attempts[1]["slurm_job_id"] == slurm_id, "shrunk in place: the same Slurm job"
    alice.hs("cancel", str(job), "--wait")


def test_a_plain_job_waiting_in_a_partition_over_the_same_nodes_makes_the_elastic_job_shrink(
        alice: UserSession) -> None:
    """Partitions that share nodes: a plain job submitted to ``short`` (the same nodes as
    ``debug``, cluster/slurm.conf) waits for nodes alice's elastic job in ``debug`` holds; the
    coordinator shrinks it for that job as for one of its own partition."""
    copy_example(alice, "digits_cnn.py")
    job = alice.run_job("digits_cnn.py", "--nodes", "1-3", "--start-nodes", "3", "--", "--epochs", "400", *DIGITS)
    running_attempt(alice, job, 1, nodes=3, min_steps=5)
    slurm_id = int(alice.status(job)["attempts"][0]["slurm_job_id"])
    since = time.time()
    other = plain_sbatch(OTHER, nodes=2, seconds=20, partition="short")
    try:
        wait_for(lambda: slurm_job(other)[0] in ("RUNNING", "COMPLETING", ""), 120, "the plain job in short to start")
        assert slurm_job(slurm_id) == ("RUNNING", 1), "the elastic job went on, in place, on one node"
    finally:
        subprocess.run(["scancel", str(other)], capture_output=True)
    decided = [e for e in audit() if float(str(e["time"])) >= since and e.get("slurm_job_id") == slurm_id
               and e["event"] == "decided"]
    assert decided and decided[0]["action"] == "shrink" and str(other) in str(decided[0]["reason"]), decided
    alice.hs("cancel", str(job), "--wait")


def test_another_user_cannot_report_see_or_act_on_alices_jobs(alice: UserSession) -> None:
    copy_example(alice, "digits_cnn.py")
    job = alice.run_job("digits_cnn.py", "--nodes", "1-2", "--start-nodes", "1", "--name", "secret-name",
                        "--", "--epochs", "400", *DIGITS)
    running_attempt(alice, job, 1, nodes=1, min_steps=3)
    slurm_id = int(alice.status(job)["attempts"][0]["slurm_job_id"])
    bob = make_session(OTHER)
    try:
        bob.env["HPCSCHED_COORDINATOR_SOCKET"] = SOCKET
        wait_for(lambda: any(d.get("slurm_job_id") == slurm_id for d in json.loads(
            alice.hs("site", "status", "--json").stdout)["decisions"]), 60, "the coordinator to know the job")
        seen = json.loads(bob.hs("site", "status", "--json").stdout)["decisions"]
        assert seen and all("slurm_job_id" not in d and "reason" not in d for d in seen), seen
        assert "secret-name" not in bob.hs("site", "status", "--json").stdout
        denied = bob.hs("site", "status", "--all-users", check=False)
        assert denied.returncode == 3 and "operators" in denied.stderr
        assert bob.hs("site", "audit", check=False).returncode == 3
        assert bob.hs("cancel", str(job), check=False).returncode != 0  # not in bob's store at all
        forged = subprocess.run(
            [f"{SITE_VENV}/bin/python", "-c",
             "import json,sys; from hpcsched.daemon.client import send; "
             f"print(json.dumps(send({SOCKET!r}, 'report', {{'jobs': [{{'slurm_job_id': {slurm_id}, 'view': {{}}}}]}})))"],
            user=OTHER, group=OTHER, cwd="/tmp", capture_output=True, text=True, timeout=60)
        assert forged.returncode == 0, forged.stderr
        answer = json.loads(forged.stdout)
        assert answer["accepted"] == [] and "another user" in answer["refused"][0]["why"]
        assert slurm_job(slurm_id)[0] == "RUNNING"
    finally:
        end_session(bob)
        alice.hs("cancel", str(job), "--wait")


def test_a_coordinator_killed_mid_pass_leaves_no_job_stranded(alice: UserSession) -> None:
    coordinator_ctl("restart", fault="site_after_signal")  # dies right after it signalled a shrink
    try:
        copy_example(alice, "digits_cnn.py")
        job = alice.run_job("digits_cnn.py", "--nodes", "1-3", "--start-nodes", "3", "--", "--epochs", "400", *DIGITS)
        running_attempt(alice, job, 1, nodes=3, min_steps=5)
        slurm_id = int(alice.status(job)["attempts"][0]["slurm_job_id"])
        wait_for(lambda: any(d.get("slurm_job_id") == slurm_id for d in json.loads(
            alice.hs("site", "status", "--json").stdout)["decisions"]), 60, "the coordinator to know the elastic job")
        other = plain_sbatch(OTHER, nodes=2, seconds=600)
        try:
            wait_for(lambda: not coordinator_running(), 120, "the coordinator to die in its pass")
            coordinator_ctl("start")
            wait_for(lambda: slurm_job(other)[0] == "RUNNING", 120, "the plain job to start")
            wait_for(lambda: len(alice.status(job)["attempts"]) >= 2, 60, "the daemon to record the shrink")
            running_attempt(alice, job, 2, nodes=1, min_steps=3)
            time.sleep(15)  # a few more passes of the restarted coordinator: nothing is done twice
            attempts = alice.status(job)["attempts"]
            assert [(a["reason"], a["nodes"]) for a in attempts] == [("submit", 3), ("resize", 1)], attempts
            assert {a["slurm_job_id"] for a in attempts} == {slurm_id}, "shrunk in place, never requeued"
            assert slurm_job(slurm_id) == ("RUNNING", 1)
        finally:
            subprocess.run(["scancel", str(other)], capture_output=True)
        # Nobody waits any more: the coordinator offers a grow, alice's daemon carries it out
        # (make-before-break: a new allocation of 3 nodes takes over).
        wait_for(lambda: len(alice.status(job)["attempts"]) >= 3, 120, "the grow back")
        running_attempt(alice, job, 3, nodes=3, min_steps=1)
        alice.hs("cancel", str(job), "--wait")
    finally:
        coordinator_ctl("restart")


def test_the_systemd_unit_shipped_for_the_coordinator_is_valid(tmp_path: Path) -> None:
    unit = tmp_path / "hpcsched-coordinator.service"
    unit.write_text((REPO / "contrib" / "systemd" / "hpcsched-coordinator.service").read_text())
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    assert f"ExecStart={SITE_VENV}/bin/hpcsched site coordinator" in unit.read_text()
