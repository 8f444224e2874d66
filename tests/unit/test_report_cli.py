"""``hpcsched report`` in process (click's CliRunner). The daemon, the Slurm runner and the clock
are replaced through :class:`Sources`: the runner answers with recorded sacct output, or fails
the way sacct fails when accounting is down or slow (faults a unit test cannot cause for real)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hpcsched.cli.report import report
from hpcsched.report.gather import Sources
from hpcsched.slurm.runner import CommandResult, SlurmCommandError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"
SACCT = (FIXTURES / "sacct-report-jobs.json").read_text()
HPCSCHED = json.loads((FIXTURES / "sacct-report-jobs-hpcsched.json").read_text())
NOW = HPCSCHED["recorded"]


@dataclass
class FakeSlurm:
    """A runner with run_slurm's signature; records every call."""

    stdout: str = SACCT
    error: SlurmCommandError | None = None
    calls: list[tuple[list[str], float]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 30.0) -> CommandResult:
        self.calls.append((list(argv), timeout))
        if self.error is not None:
            raise self.error
        return CommandResult(tuple(argv), self.stdout, "")


def sources(slurm: FakeSlurm, jobs: list[dict[str, Any]] | None = None, operator: bool = False) -> Sources:
    def call(settings: Any, op: str, args: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
        assert op == "status"
        return HPCSCHED["status"] if jobs is None else jobs

    def ensure(settings: Any) -> dict[str, Any]:
        return {"store_id": HPCSCHED["daemon"]["store_id"], **({"operator": True} if operator else {})}

    return Sources(call=call, ensure_daemon=ensure, runner=slurm, clock=lambda: NOW, whoami=lambda: "hpcuser")


def invoke(src: Sources, *args: str) -> Result:
    return CliRunner().invoke(report, list(args), obj=src)


def test_one_sacct_call_for_the_whole_report() -> None:
    slurm = FakeSlurm()
    result = invoke(sources(slurm), "--format", "json", "--since", "1h")
    assert result.exit_code == 0, result.output
    assert len(slurm.calls) == 1
    argv, timeout = slurm.calls[0]
    assert argv[:3] == ["sacct", "--json", "-D"] and argv[3].startswith("--starttime=") and argv[4] == "--endtime=now"
    assert "--allusers" not in argv and not any(a.startswith("--jobs") for a in argv)
    assert timeout == 60
    data = json.loads(result.stdout)
    assert data["accounting"]["available"] and len(data["jobs"]) == 5
    assert result.stderr == ""


def test_failing_sacct_still_reports_hpcscheds_side_and_says_so() -> None:
    error = SlurmCommandError(["sacct"], 1, "", "sacct: error: Problem talking to the database: Connection refused")
    result = invoke(sources(FakeSlurm(error=error)), "--format", "json", "--since", "1h")
    assert result.exit_code == 0, result.output
    assert "Slurm accounting unavailable" in result.stderr and "Connection refused" in result.stderr
    data = json.loads(result.stdout)
    assert data["accounting"]["available"] is False
    job = data["jobs"][3]
    assert (job["name"], job["state"], [a["reason"] for a in job["attempts"]]) == ("requeued", "COMPLETED", ["submit", "requeue"])
    assert (job["node_hours"], job["run_time"], job["queue_wait"], job["accounting"]) == (None, None, None, "unavailable")


def test_sacct_that_does_not_answer_in_time_is_asked_with_the_given_timeout() -> None:
    slurm = FakeSlurm(error=SlurmCommandError(["sacct"], None, "", "", why="no answer within 5 s"))
    result = invoke(sources(slurm), "--sacct-timeout", "5", "--since", "1h")
    assert result.exit_code == 0, result.output
    assert slurm.calls[0][1] == 5
    assert "no answer within 5 s" in result.stderr
    assert "? = unknown: Slurm accounting could not be read (sacct failed: no answer within 5 s)" in result.stdout


def test_garbage_from_sacct_is_not_taken_for_runs() -> None:
    result = invoke(sources(FakeSlurm(stdout="sacct: warning\n")), "--format", "csv", "--since", "1h")
    assert result.exit_code == 0, result.output
    assert "not JSON" in result.stderr
    assert result.stdout.count("\n") == 8  # header and 7 attempts, with their Slurm cells empty


def test_named_jobs_ask_sacct_for_their_slurm_ids_only() -> None:
    slurm = FakeSlurm()
    result = invoke(sources(slurm), "--job", "4", "--job", "5", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "--jobs=64,65" in slurm.calls[0][0]
    assert [line.split(",")[1] for line in result.stdout.splitlines()[1:]] == ["requeued"] * 2 + ["digits"] * 2


def test_an_unknown_job_is_an_error() -> None:
    result = invoke(sources(FakeSlurm()), "--job", "99")
    assert result.exit_code == 1 and "no job 99" in result.stderr


def test_another_users_report_needs_an_operator() -> None:
    slurm = FakeSlurm()
    denied = invoke(sources(slurm), "--user", "alice")
    assert denied.exit_code == 3 and "own jobs (hpcuser)" in denied.stderr and not slurm.calls
    allowed = invoke(sources(slurm, operator=True), "--user", "hpcuser", "--format", "json", "--since", "1h")
    assert allowed.exit_code == 0, allowed.output
    assert "--allusers" in slurm.calls[0][0]


def test_no_jobs_in_the_window_asks_slurm_nothing() -> None:
    slurm = FakeSlurm()
    result = invoke(sources(slurm, jobs=[]), "--since", "1h")
    assert result.exit_code == 0 and "no jobs" in result.stdout and not slurm.calls


def test_a_bad_since_is_a_usage_error() -> None:
    result = invoke(sources(FakeSlurm()), "--since", "last tuesday")
    assert result.exit_code == 2 and "--since" in result.stderr


def test_plots_go_to_the_directory_and_their_paths_to_stderr(tmp_path: Path) -> None:
    result = invoke(sources(FakeSlurm()), "--since", "1h", "--plot", str(tmp_path / "plots"), "--format", "json")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["allocation-timeline.png", "queue-wait.png", "useful-vs-lost.png"]
    assert result.stderr.count("wrote ") == 3
    json.loads(result.stdout)


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_every_format_shows_every_job(fmt: str) -> None:
    result = invoke(sources(FakeSlurm()), "--since", "1h", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in ("ok", "fail", "cancelled", "requeued", "digits"))
