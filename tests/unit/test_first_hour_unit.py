"""What a new user met in their first hour (issue 14, item 8), each as the CLI now shows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from test_cli_run import dirs, run, write  # noqa: F401  (dirs is a fixture)
from test_runtime_trainer import SIZE, env_for, make_trainer, train

from hpcsched.cli import cluster, jobs
from hpcsched.cli.main import cli
from hpcsched.daemon import client
from hpcsched.daemon.rebalance_plan import in_nodes
from hpcsched.errors import ValidationError
from hpcsched.jobs.progress import summarize
from hpcsched.planning import fields


def status_row(**job: Any) -> str:
    base = {"id": 3, "name": "train", "user": "alice", "state": "COMPLETED", "nodes": 1, "slurm_job_id": 40,
            "elapsed": 12.0, "progress": None, "reason": "", "exit_code": 0}
    console = Console(width=200, record=True)
    console.print(jobs.job_table([{**base, **job}]))
    return console.export_text().splitlines()[1].rstrip()


def test_a_cancelled_job_shows_no_exit_code_that_reads_as_success() -> None:
    assert status_row(state="CANCELLED", exit_code=0).endswith("cancelled (no exit code)")
    assert status_row(state="COMPLETED", exit_code=0).endswith("exit 0")
    assert status_row(state="FAILED", exit_code=3).endswith("exit 3")


def test_time_limit_errors_say_the_unit() -> None:
    with pytest.raises(ValidationError) as too_long:
        fields.parse_time("400-00:00")
    assert "must be between 0 and 365 days, got 400 days" in str(too_long.value)


def test_a_10000_character_name_is_not_echoed_whole(dirs: dict[str, Path]) -> None:  # noqa: F811
    result = run(dirs, str(write(dirs, "train.py")), "--name", "x" * 9_999 + "!", "--dry-run")
    assert result.exit_code == 2
    assert "--name" in result.stderr and "… (10,000 characters) is not allowed" in result.stderr
    assert len(result.stderr) < 300


def test_resize_to_one_node_says_node() -> None:
    assert fields.format_count(1, "node") == "1 node" and fields.format_count(2, "node") == "2 nodes"


@pytest.fixture
def crontab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The user's crontab (a list), and no cron daemon on this host."""
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(tmp_path))
    lines: list[str] = []
    monkeypatch.setattr(cluster, "crontab_lines", lambda: list(lines))
    monkeypatch.setattr(cluster, "write_crontab", lambda new: lines.__setitem__(slice(None), new))
    monkeypatch.setattr(cluster, "cron_daemon_running", lambda: False)
    monkeypatch.setattr(client, "call", None)  # no daemon is asked
    return lines


def test_cron_install_says_that_no_cron_daemon_runs_here_and_exits_1(crontab: list[str]) -> None:
    result = CliRunner().invoke(cli, ["cron", "install", "--every", "5m"])
    assert result.exit_code == 1
    assert "the entry is installed, but no cron daemon runs on this host" in result.stderr
    assert "ask the administrators to run cron" in result.stderr
    assert len(crontab) == 1 and crontab[0].startswith("*/5 * * * * ")


def test_cron_status_says_that_no_cron_daemon_runs_here(crontab: list[str]) -> None:
    crontab.append(cluster.cron_entry("*/5 * * * *"))
    result = CliRunner().invoke(cli, ["cron", "status"])
    assert result.exit_code == 1
    assert "no cron daemon runs on this host, so nothing runs the entry" in result.stderr


@pytest.mark.parametrize("every", ["7s", "61m", "x" * 10_000])
def test_cron_install_with_a_bad_interval_exits_2_like_other_validation_errors(crontab: list[str], every: str) -> None:
    result = CliRunner().invoke(cli, ["cron", "install", "--every", every])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("hpcsched: error: --every: ") and len(result.stderr) < 200
    assert crontab == []


def record(attempt: int, step: int, samples: int, world_size: int, total_steps: int) -> dict[str, Any]:
    return {"time": 100.0 + step, "attempt": attempt, "event": "step", "step": step, "samples": samples,
            "world_size": world_size, "total_steps": total_steps, "total_samples": 3200}


def test_progress_does_not_go_back_after_a_shrink() -> None:
    """Half of the samples done on 2 nodes (step 50 of 100); on 1 node the same samples are step 50 of 150."""
    before = summarize([record(1, 40, 1280, 2, 100), record(1, 50, 1600, 2, 100)])
    after = summarize([record(1, 50, 1600, 2, 100), record(2, 50, 1600, 1, 150), record(2, 51, 1616, 1, 150)])
    assert before is not None and after is not None
    assert jobs.progress_text(before) == "step 50 (50%)"
    assert jobs.progress_text(after) == "step 51 (50%)"
    assert jobs.fraction_done(after) >= jobs.fraction_done(before)  # type: ignore[operator]


def test_the_runtime_reports_the_samples_of_all_epochs(tmp_path: Path) -> None:
    trainer = make_trainer(env_for(tmp_path, 1), checkpoint_every=None)
    train(trainer, 2, [])
    records = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert {r["total_samples"] for r in records} == {2 * SIZE}
    assert records[-1]["samples"] == 2 * SIZE


def test_rebalance_explains_in_nodes_not_gpus() -> None:
    assert in_nodes("keeps 2 GPUs: no change saves more than it costs") == "keeps 2 nodes: no change saves more than it costs"
    assert in_nodes("waits: its minimum of 1 GPUs exceeds the capacity") == "waits: its minimum of 1 node exceeds the capacity"


def test_rebalance_says_a_gain_was_not_measured_yet_for_a_job_timed_at_one_size() -> None:
    decision = {"job": 1, "name": "train", "current_nodes": 2, "target_nodes": 2, "gain_s": 0.0, "cost_s": 0.0,
                "reason": "keeps 2 nodes: no change saves more than it costs", "waiting": False, "measured_nodes": [2]}
    console = Console(width=200, record=True)
    console.print(cluster.decisions_table({"decisions": [decision]}))
    assert "not measured yet" in console.export_text()
    assert cluster.gain_shown({**decision, "measured_nodes": [1, 2]}) == "0"
