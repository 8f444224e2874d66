"""The job's environment is explicit (F7): Slurm's commands, and so every job, run in an
environment hpcsched builds, never the caller's; the batch shell runs no start-up file.

The runner is exercised for real with a stand-in ``sbatch`` on PATH that prints its environment.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcsched.cli.main import cli
from hpcsched.daemon import client
from hpcsched.planning.plan import plan_submission
from hpcsched.planning.request import JobRequest
from hpcsched.slurm.runner import PASSED_VARIABLES, ignored_variables, run_slurm, slurm_environment

DOCUMENTED = {"PATH", "HOME", "USER", "LANG", "LC_ALL", *PASSED_VARIABLES}
CALLER = {
    "PATH": "/root/bin:/usr/bin", "HOME": "/root", "USER": "root", "BASH_ENV": "/tmp/x.sh", "ENV": "/tmp/x.sh",
    "SBATCH_TIMELIMIT": "5", "SBATCH_PARTITION": "other", "SLURM_TIME_FORMAT": "relative", "SQUEUE_FORMAT": "%i",
    "LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp", "TZ": "Europe/Berlin", "SLURM_CONF": "/etc/slurm/slurm.conf",
}


@pytest.fixture
def fake_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bash ``sbatch`` first on PATH that prints its environment; the caller's environment holds
    everything a daemon started from a careless shell could hold, BASH_ENV with a marker script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text("#!/bin/bash\nenv\n")
    sbatch.chmod(0o755)
    marker = tmp_path / "sourced"
    startup = tmp_path / "startup.sh"
    startup.write_text(f"touch {shlex.quote(str(marker))}\n")
    for key, value in CALLER.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BASH_ENV", str(startup))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return marker


def printed_env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_F7_slurm_environment_is_exactly_the_documented_set() -> None:
    env = slurm_environment(CALLER, "/home/alice", "alice", "/opt/slurm/bin")
    assert env == {
        "PATH": "/opt/slurm/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/home/alice", "USER": "alice",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "Europe/Berlin", "SLURM_CONF": "/etc/slurm/slurm.conf",
    }


def test_slurm_commands_in_a_system_directory_do_not_repeat_it_in_path() -> None:
    assert slurm_environment({}, "/h", "u", "/usr/bin")["PATH"] == "/usr/local/bin:/usr/bin:/bin"


def test_F7_sbatch_runs_without_the_callers_environment_or_its_bash_env(fake_sbatch: Path) -> None:
    env = printed_env(run_slurm(["sbatch", "--parsable", "x.sh"]).stdout)
    # bash itself adds PWD, SHLVL and _; everything else is hpcsched's.
    assert set(env) - {"PWD", "SHLVL", "_"} <= DOCUMENTED
    assert env["USER"] == pwd.getpwuid(os.getuid()).pw_name
    assert env["TZ"] == "Europe/Berlin" and env["LC_ALL"] == "C.UTF-8"
    assert not fake_sbatch.exists(), "the caller's BASH_ENV ran"


def test_F7_ignored_variables_name_what_would_override_the_users_options() -> None:
    assert ignored_variables(CALLER) == ["BASH_ENV", "ENV", "SBATCH_PARTITION", "SBATCH_TIMELIMIT",
                                         "SLURM_TIME_FORMAT", "SQUEUE_FORMAT"]


def test_F7_run_warns_about_the_variables_it_ignores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("SBATCH_TIMELIMIT", "5")
    submitted = {"id": 1, "slurm_job_id": 9, "name": "train"}
    monkeypatch.setattr(client, "ensure_daemon", lambda *_: {})
    monkeypatch.setattr(client, "call", lambda *_: submitted)
    result = CliRunner().invoke(cli, ["run", "--workdir", str(tmp_path), str(tmp_path / "train.py")])
    assert result.exit_code == 0, result.output
    assert "ignoring SBATCH_TIMELIMIT from your environment" in result.stderr


def test_F7_batch_shell_does_not_run_bash_env(tmp_path: Path) -> None:
    """The batch script's own interpreter line, run with BASH_ENV set, does not run it."""
    plan = plan_submission(JobRequest.from_options({"script": "/w/t.py", "workdir": "/w"}),
                           job_id=1, store_id="s", job_dir=str(tmp_path), python="/usr/bin/python3")
    interpreter = plan.script_text.splitlines()[0].removeprefix("#!").split()
    marker = tmp_path / "sourced"
    startup = tmp_path / "startup.sh"
    startup.write_text(f"touch {shlex.quote(str(marker))}\n")
    env: dict[str, Any] = {"PATH": "/usr/bin:/bin", "BASH_ENV": str(startup), "ENV": str(startup)}
    subprocess.run([*interpreter, "-c", "true"], env=env, check=True, timeout=30)
    assert not marker.exists()


def test_F7_sbatch_exports_exactly_its_own_environment() -> None:
    plan = plan_submission(JobRequest.from_options({"script": "/w/t.py", "workdir": "/w"}),
                           job_id=1, store_id="s", job_dir="/j", python="/usr/bin/python3")
    assert plan.argv[:3] == ("sbatch", "--parsable", "--export=ALL")
