"""`hpcsched run` end to end: Slurm allocation → launcher per node → rootless Podman → torchrun."""

from __future__ import annotations

import json
import os
import pwd
import re

from conftest import NODE_PREFIX, UserSession, copy_example


def test_two_node_allreduce_gives_the_known_sum_on_two_nodes(session: UserSession) -> None:
    copy_example(session, "allreduce.py")
    job = session.run_job("allreduce.py", "--nodes", "2", "--procs-per-node", "2", "--name", "ar")
    info = session.wait(job)
    assert info["state"] == "COMPLETED", session.logs(job)
    assert info["exit_code"] == 0
    assert info["nodes"] == 2 and info["slurm_job_id"]
    lines = re.findall(rf"allreduce rank=(\d+) world=(\d+) node=({NODE_PREFIX}\d+) sum=(\d+) expected=(\d+)", session.logs(job))
    assert sorted(int(r) for r, *_ in lines) == [0, 1, 2, 3]
    assert {(w, s, e) for _, w, _, s, e in lines} == {("4", "10", "10")}
    assert len({node for _, _, node, _, _ in lines}) == 2, lines


def test_status_json_has_the_documented_keys_and_one_attempt(session: UserSession) -> None:
    copy_example(session, "allreduce.py")
    job = session.run_job("allreduce.py", "--nodes", "1")
    info = session.wait(job)
    for key in ("id", "name", "user", "state", "nodes", "slurm_job_id", "attempts"):
        assert key in info
    assert info["user"] == session.user and info["name"] == "allreduce"
    assert [a["number"] for a in info["attempts"]] == [1]
    assert info["attempts"][0]["reason"] == "submit"


def test_failing_script_is_reported_failed_with_its_exit_code(session: UserSession) -> None:
    session.write("fail.py", "import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n")
    job = session.run_job("fail.py", "--nodes", "1")
    info = session.wait(job)
    assert info["state"] == "FAILED"
    assert info["exit_code"] not in (0, None)
    assert "about to fail" in session.logs(job)


def test_F2_hostile_script_path_and_arguments_arrive_intact(session: UserSession) -> None:
    name = "we ird 'q' \"dq\"; $(touch pwned) ünï.py"
    session.write(name, "import sys, json\nprint('ARGV=' + json.dumps(sys.argv), flush=True)\n")
    args = ["--msg", "a b; echo $(id) `id` 'x' \"y\"", "ünïcode"]
    job = session.run_job(name, "--nodes", "1", "--", *args)
    info = session.wait(job)
    assert info["state"] == "COMPLETED", session.logs(job)
    line = next(x for x in session.logs(job).splitlines() if x.startswith("ARGV="))
    argv = json.loads(line[len("ARGV="):])
    assert argv[0].endswith(name) and argv[1:] == args
    assert not (session.workdir / "pwned").exists()


def test_env_option_reaches_the_script(session: UserSession) -> None:
    session.write("env.py", "import os\nprint('GREETING=' + os.environ['GREETING'], flush=True)\n")
    job = session.run_job("env.py", "--env", "GREETING=hello world")
    assert session.wait(job)["state"] == "COMPLETED"
    assert "GREETING=hello world" in session.logs(job)


def test_E8_files_written_by_the_job_belong_to_the_user(session: UserSession) -> None:
    session.write("touch.py", "open('out.txt', 'w').write('x')\n")
    job = session.run_job("touch.py")
    assert session.wait(job)["state"] == "COMPLETED"
    assert os.stat(session.workdir / "out.txt").st_uid == pwd.getpwnam(session.user).pw_uid
