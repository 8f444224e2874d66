"""Bad input gets a clear error before anything is submitted or written (F1–F4, F6)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import UserSession

OK_SCRIPT = "print('hello')\n"


def session_jobs(session: UserSession) -> list[str]:
    """Slurm jobs whose working directory is this session's (other tests may share the cluster)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if str(session.root) in line]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--name", "x\nrm -rf ~"], "--name"),
        (["--name", "a;b"], "--name"),
        (["--gpus-per-node", "-1"], "--gpus-per-node"),
        (["--nodes", "0"], "--nodes"),
        (["--nodes", "1e9"], "--nodes"),
        (["--nodes", "5-2"], "--nodes"),
        (["--time", "0"], "--time"),
        (["--mem", "lots"], "--mem"),
        (["--partition", "debug;id"], "--partition"),
        (["--env", "PATH=/evil"], "--env"),
        (["--sbatch", "--uid=0"], "--sbatch"),
        (["--sbatch", "--x=$(id)"], "--sbatch"),
    ],
)
def test_F1_F3_bad_option_is_refused_naming_the_field_and_nothing_is_submitted(
    session: UserSession, args: list[str], field: str
) -> None:
    session.write("ok.py", OK_SCRIPT)
    proc = session.hs("run", "ok.py", *args, check=False)
    assert proc.returncode == 2
    assert field in proc.stderr
    assert session_jobs(session) == []
    assert not os.listdir(session.root / "jobs")
    assert not os.listdir(session.state_dir), "no daemon is started for a refused request"


def test_F6_missing_script_is_refused_with_its_path(session: UserSession) -> None:
    proc = session.hs("run", "nothere.py", check=False)
    assert proc.returncode == 2 and "nothere.py: no such file" in proc.stderr


def test_F6_script_with_syntax_error_is_refused_with_line_number(session: UserSession) -> None:
    session.write("broken.py", "def f(:\n    pass\n")
    proc = session.hs("run", "broken.py", check=False)
    assert proc.returncode == 2 and "broken.py:1: syntax error" in proc.stderr


def test_F4_unreadable_script_is_refused_with_reason(session: UserSession) -> None:
    path = session.write("secret.py", OK_SCRIPT)
    os.chmod(path, 0o000)
    proc = session.hs("run", "secret.py", check=False)
    assert proc.returncode == 2 and "permission denied" in proc.stderr


def test_script_outside_the_workdir_is_refused(session: UserSession) -> None:
    session.write("sub/ok.py", OK_SCRIPT)
    proc = session.hs("run", str(session.workdir / "sub" / "ok.py"), "--workdir", str(session.root / "state"), check=False)
    assert proc.returncode == 2 and "not inside the work directory" in proc.stderr


def test_sbatch_rejection_is_reported_and_recorded(session: UserSession) -> None:
    session.write("ok.py", OK_SCRIPT)
    proc = session.hs("run", "ok.py", "--partition", "nosuchpartition", check=False)
    assert proc.returncode != 0 and "invalid partition" in proc.stderr.lower()
