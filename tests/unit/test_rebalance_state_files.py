"""The rebalance pass's files in the state directory (``rebalance.lock``, ``rebalance.log``) are
opened as the daemon's others are: a link planted there is refused, naming it, and its target is
left untouched (G5); the cron entry logs through hpcsched, not through the shell."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakeslurm import Core

from hpcsched.cli import cluster
from hpcsched.cli.main import cli
from hpcsched.daemon import statedir
from hpcsched.daemon.rebalance import pass_lock
from hpcsched.daemon.service import Caller
from hpcsched.daemon.statedir import UnsafePath


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return Path(statedir.private_directory(str(tmp_path / "state")))


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("precious data\n")
    return path


def hpcsched(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (``--log`` redirects the process's output)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(state.parent), "HPCSCHED_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "hpcsched", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_G5_a_planted_rebalance_lock_link_is_refused_and_its_target_untouched(state: Path, victim: Path) -> None:
    (state / "rebalance.lock").symlink_to(victim)
    refused = pytest.raises(UnsafePath, match=re.escape(f"{state / 'rebalance.lock'} is a symbolic link (to {victim}"))
    with refused, pass_lock(str(state)):
        pytest.fail("the pass ran under a planted lock")
    assert victim.read_text() == "precious data\n"


def test_G5_a_pass_asked_for_on_the_socket_reports_the_planted_lock(tmp_path: Path, victim: Path) -> None:
    core = Core(tmp_path)
    (tmp_path / "state" / "rebalance.lock").symlink_to(victim)
    with pytest.raises(UnsafePath, match=r"rebalance\.lock is a symbolic link"):
        core.service.op_rebalance({}, Caller(uid=os.getuid(), user="me"))
    assert victim.read_text() == "precious data\n"


def test_a_new_lock_file_is_private(state: Path) -> None:
    with pass_lock(str(state)):
        pass
    assert stat.S_IMODE(os.lstat(state / "rebalance.lock").st_mode) == 0o600


def test_G5_a_planted_rebalance_log_link_is_refused_and_nothing_is_written(state: Path, victim: Path) -> None:
    log = state / "rebalance.log"
    log.symlink_to(victim)
    proc = hpcsched(state, "rebalance", "--quiet", "--log", str(log))
    assert proc.returncode == 1
    assert f"{log} is a symbolic link (to {victim}" in proc.stderr
    assert victim.read_text() == "precious data\n"


def test_rebalance_log_gets_everything_the_pass_prints_appended(state: Path) -> None:
    log = state / "rebalance.log"
    for _ in range(2):  # refused before the daemon is asked: its error is the pass's output
        proc = hpcsched(state, "rebalance", "--all-users", "--log", str(log))
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", "")
    assert log.read_text().count("--all-users needs --dry-run") == 2
    assert stat.S_IMODE(os.lstat(log).st_mode) == 0o600


def test_the_cron_entry_logs_through_hpcsched_not_the_shell(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(state))
    entry = cluster.cron_entry("*/5 * * * *")
    assert f"rebalance --quiet --wait 60 --log {state / 'rebalance.log'} # hpcsched rebalance" in entry
    assert ">" not in entry


def test_G5_cron_status_refuses_a_planted_log_link(state: Path, victim: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(state))
    monkeypatch.setattr(cluster, "crontab_lines", lambda: [cluster.cron_entry("*/5 * * * *")])
    monkeypatch.setattr(cluster, "cron_daemon_running", lambda: True)
    (state / "rebalance.log").write_text("pass 1\npass 2\n")
    shown = CliRunner().invoke(cli, ["cron", "status"])
    assert shown.exit_code == 0 and shown.stdout.endswith("pass 1\npass 2\n")
    os.unlink(state / "rebalance.log")
    (state / "rebalance.log").symlink_to(victim)
    refused = CliRunner().invoke(cli, ["cron", "status"])
    assert refused.exit_code == 1 and "rebalance.log is a symbolic link" in refused.stderr
    assert "precious data" not in refused.output


def test_cron_status_asks_to_reinstall_an_entry_that_logs_through_the_shell(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(state))
    old = f"*/5 * * * * hpcsched rebalance --quiet --wait 60 >> {state}/rebalance.log 2>&1 # hpcsched rebalance"
    monkeypatch.setattr(cluster, "crontab_lines", lambda: [old])
    monkeypatch.setattr(cluster, "cron_daemon_running", lambda: True)
    shown = CliRunner().invoke(cli, ["cron", "status"])
    assert shown.exit_code == 0
    assert "`hpcsched cron install` replaces it with one that logs safely" in shown.stderr
