"""Input the daemon must judge itself (reliability items 3, 6, 7 and 9): requests sent straight to
the socket get every check the CLI makes (F5), the job's environment is explicit whatever the
daemon's environment holds (F7), and a job the partition can never start is refused at submit."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from conftest import UserSession

OK_SCRIPT = "print('hello', flush=True)\n"
SEND = (
    "import json,socket,sys\n"
    "for line in sys.stdin:\n"
    "    s=socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])\n"
    "    s.sendall(line.encode()); s.shutdown(socket.SHUT_WR)\n"
    "    data=b''\n"
    "    while chunk := s.recv(65536): data += chunk\n"
    "    print(data.decode().strip(), flush=True); s.close()\n"
)


def send_as_user(session: UserSession, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    """Send each message on its own connection to the session's daemon, as the user (the daemon
    serves its owner only); return the answers."""
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    out = subprocess.run(["python3", "-c", SEND, str(session.daemon_file("sock"))], input=stdin,
                         user=session.user, group=session.user, extra_groups=[], env=session.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def slurm_jobs_of(session: UserSession) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if str(session.root) in line]


def assert_nothing_submitted(session: UserSession) -> None:
    assert json.loads(session.hs("status", "--json").stdout) == []
    assert not os.listdir(session.root / "jobs")
    assert slurm_jobs_of(session) == []


def run_request(**request: Any) -> dict[str, Any]:
    return {"op": "run", "args": {"request": request}}


def test_6_raw_socket_request_for_etc_passwd_is_refused_and_nothing_is_submitted(session: UserSession) -> None:
    session.hs("daemon", "start")
    work = str(session.workdir)
    session.write("passwd.py", "root:x:0:0:root:/root:/bin/bash\n")
    os.symlink("/nonexistent/x.py", session.workdir / "dangling.py")
    replies = send_as_user(
        session,
        run_request(script="/etc/passwd", workdir="/"),
        run_request(script=f"{work}/passwd.py", workdir=work),
        run_request(script=f"{work}/missing.py", workdir=work),
        run_request(script=f"{work}/dangling.py", workdir=work),
        run_request(script=f"{work}/nodir/x.py", workdir=f"{work}/nodir"),
    )
    assert [r["kind"] for r in replies] == ["validation"] * 5, replies
    assert "--workdir: / is a system directory" in replies[0]["error"]
    assert "passwd.py:1: syntax error" in replies[1]["error"]
    assert "missing.py: no such file" in replies[2]["error"]
    assert "dangling.py: not a regular file" in replies[3]["error"]
    assert "nodir: not an existing directory" in replies[4]["error"]
    assert_nothing_submitted(session)


def test_7_raw_socket_request_with_a_link_out_of_the_work_directory_is_refused_and_nothing_is_submitted(
        session: UserSession) -> None:
    session.hs("daemon", "start")
    session.write("ok.py", OK_SCRIPT)
    os.symlink("/etc", session.workdir / "data")
    work = str(session.workdir)
    [reply] = send_as_user(session, run_request(script=f"{work}/ok.py", workdir=work))
    assert reply["kind"] == "validation", reply
    assert reply["error"].startswith(f"--workdir: {work}/data is a symbolic link to /etc, outside the work directory")
    assert_nothing_submitted(session)


def test_F5_requests_of_the_wrong_shape_get_a_clear_error_and_the_daemon_still_answers(session: UserSession) -> None:
    session.hs("daemon", "start")
    work = str(session.workdir)
    replies = send_as_user(
        session,
        {"op": "run", "args": {"request": "train.py"}},
        run_request(script=5, workdir=work),
        run_request(script=f"{work}/a.py", workdir=work, nodes=[1, 2]),
        run_request(script=f"{work}/a.py", workdir=work, env={"LD_PRELOAD": "/tmp/x.so"}),
        run_request(script=f"{work}/a.py", workdir=work, surprise=1),
        {"op": "ping", "args": {}},
    )
    assert [r["kind"] for r in replies[:5]] == ["validation"] * 5, replies
    assert replies[0]["error"] == "request: missing"
    assert replies[1]["error"] == "SCRIPT: a path is required"
    assert replies[2]["error"].startswith("--nodes: ")
    assert replies[3]["error"] == "--env: expected a list"
    assert replies[4]["error"] == "surprise: unknown request field"
    assert replies[5]["ok"] is True
    assert_nothing_submitted(session)


def test_F7_loader_variable_in_env_is_refused_with_the_reason(session: UserSession) -> None:
    session.write("ok.py", OK_SCRIPT)
    proc = session.hs("run", "ok.py", "--env", "LD_PRELOAD=/tmp/x.so", check=False)
    assert proc.returncode == 2
    assert "--env: LD_PRELOAD cannot be set: it is a dynamic loader variable" in proc.stderr


def test_9_more_nodes_than_the_partition_has_is_refused_at_submit(session: UserSession) -> None:
    session.write("ok.py", OK_SCRIPT)
    proc = session.hs("run", "ok.py", "--nodes", "1000", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "partition debug has 3 nodes; --nodes 1000 can never start" in proc.stderr
    assert_nothing_submitted(session)


def test_9_status_shows_slurms_pending_reason_in_plain_words(session: UserSession) -> None:
    session.write("ok.py", OK_SCRIPT)
    job = session.run_job("ok.py", "--sbatch=--begin=now+1hour")
    deadline = time.monotonic() + 60
    info = session.status(job)
    while info["reason"] != "BeginTime" and time.monotonic() < deadline:  # the monitor's next cycle
        time.sleep(0.5)
        info = session.status(job)
    assert (info["state"], info["reason"]) == ("PENDING", "BeginTime"), info
    table = session.hs("status", str(job)).stdout
    assert "BeginTime: waits for its earliest start time" in " ".join(table.split())


def test_F7_daemon_environment_reaches_neither_sbatch_nor_the_job(session: UserSession) -> None:
    """A daemon started from a shell with BASH_ENV and SBATCH_TIMELIMIT: the job's batch shell does
    not run the start-up file, the time limit is not 1 minute, and the user is told."""
    marker = session.root / "bash_env_ran"
    startup = session.write("startup.sh", f"touch {marker}\n")
    session.write("ok.py", OK_SCRIPT)
    careless = {"BASH_ENV": str(startup), "SBATCH_TIMELIMIT": "1", "SBATCH_NO_REQUEUE": "1"}
    proc = session.hs("run", "--json", "ok.py", env=careless)
    assert "ignoring BASH_ENV, SBATCH_NO_REQUEUE, SBATCH_TIMELIMIT from your environment" in proc.stderr
    job = int(json.loads(proc.stdout)["id"])
    slurm_id = json.loads(proc.stdout)["slurm_job_id"]
    shown = subprocess.run(["scontrol", "show", "job", "-o", str(slurm_id)], capture_output=True, text=True,
                           check=True).stdout
    assert "TimeLimit=00:01:00" not in shown and "Requeue=1" in shown, shown
    info = session.wait(job)
    assert info["state"] == "COMPLETED", session.logs(job)
    assert not marker.exists(), "the daemon's BASH_ENV ran in the job"
