"""``hpcsched run`` against a daemon that acknowledges at once and runs sbatch right after (H1):
the CLI waits for the Slurm id and reports what Slurm did, as a synchronous submission would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hpcsched.cli.main import cli
from hpcsched.daemon import client
from hpcsched.errors import DaemonNotRunning

JOB = {"id": 4, "name": "train.py", "state": "SUBMITTING", "slurm_job_id": None, "reason": ""}


class Daemon:
    """Answers ``run`` with the recorded job, then ``status`` with each of ``later`` in turn."""

    def __init__(self, *later: dict[str, Any] | Exception) -> None:
        self.later: Iterator[dict[str, Any] | Exception] = iter(later)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def call(self, settings: Any, op: str, args: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
        self.requests.append((op, args or {}))
        if op == "run":
            return dict(JOB)
        answer = next(self.later)
        if isinstance(answer, Exception):
            raise answer
        return [{**JOB, **answer}]


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon: Daemon, *args: str) -> Result:
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setattr(client, "ensure_daemon", lambda settings: {"store_id": "s"})
    monkeypatch.setattr(client, "call", daemon.call)
    (tmp_path / "train.py").write_text("print('hi')\n")
    return CliRunner().invoke(cli, ["run", "--workdir", str(tmp_path), str(tmp_path / "train.py"), *args])


def test_run_is_acknowledged_at_once_and_reports_the_slurm_id_once_sbatch_ran(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    daemon = Daemon({}, {"state": "PENDING", "slurm_job_id": 77})
    result = run(tmp_path, monkeypatch, daemon)
    assert result.exit_code == 0, result.output
    assert "hpcsched job 4 submitted as Slurm job 77" in result.output
    assert daemon.requests[0] == ("run", {"request": daemon.requests[0][1]["request"], "submit_now": False})
    assert [op for op, _ in daemon.requests] == ["run", "status", "status"]


def test_sbatchs_refusal_fails_run_with_slurms_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    why = "sbatch rejected the job: sbatch: error: Batch job submission failed: Invalid account"
    result = run(tmp_path, monkeypatch, Daemon({"state": "FAILED", "reason": why}))
    assert result.exit_code == 1 and "job 4 FAILED" in result.output and "Invalid account" in result.output


def test_a_daemon_that_stops_before_sbatch_is_reported_with_what_happens_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(tmp_path, monkeypatch, Daemon(DaemonNotRunning("gone")))
    assert result.exit_code == 1
    assert "job 4 was recorded" in result.output and "submitted when the daemon starts again" in result.output


def test_json_prints_the_job_as_slurm_took_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(tmp_path, monkeypatch, Daemon({"state": "PENDING", "slurm_job_id": 78}), "--json")
    assert result.exit_code == 0 and '"slurm_job_id": 78' in result.output


def test_a_job_slurm_has_not_listed_yet_is_reported_as_accepted_never_as_slurm_job_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch got no answer and the daemon is still looking the job up by its tag: run says so."""
    from hpcsched.cli import run as run_cli

    monkeypatch.setattr(run_cli.wait_for_slurm, "__defaults__", (0.3,))  # stop waiting soon
    waiting = {"state": "SUBMITTING", "reason": "sbatch failed: no answer within 60 s; looking the job up by its tag"}
    result = run(tmp_path, monkeypatch, Daemon(*[waiting] * 50))
    assert result.exit_code == 0, result.output
    assert "hpcsched job 4 accepted; Slurm has not taken it yet" in result.output
    assert "Slurm job None" not in result.output
