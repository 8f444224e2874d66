"""``hpcsched sweep`` in process (click's CliRunner) with a fake daemon: dry runs, refusals that
submit nothing, submission (also one that fails midway), and status from a record and the trials'
progress files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from hpcsched.cli.main import cli
from hpcsched.cli.run import run as run_command
from hpcsched.cli.sweep import sweep as sweep_group
from hpcsched.daemon import client
from hpcsched.errors import DaemonError
from hpcsched.jobs import sweep_store
from hpcsched.jobs.sweep_record import SweepRecord, TrialRecord


@dataclass
class FakeDaemon:
    """Answers ``run`` with consecutive job ids (failing from run number ``fail_at`` on) and
    ``status`` with ``jobs``; records every request."""

    fail_at: int | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)

    def call(self, settings: Any, op: str, args: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
        self.ops.append(op)
        args = args or {}
        if op == "run":
            if self.fail_at is not None and len(self.runs) + 1 >= self.fail_at:
                raise DaemonError("sbatch: error: Batch job submission failed: Invalid account")
            self.runs.append(args["request"])
            return {"id": 100 + len(self.runs), "name": args["request"]["name"], "slurm_job_id": 5000 + len(self.runs)}
        if op == "status":
            assert args.get("limit", 0) >= 1_000_000, "every job of the caller, not the latest 1000"
            return self.jobs
        raise AssertionError(f"unexpected op {op}")

    def ensure(self, settings: Any) -> dict[str, Any]:
        self.ops.append("ping")
        return {"store_id": "store-1"}


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    paths = {"jobs": tmp_path / "jobs", "state": tmp_path / "state", "work": tmp_path / "work"}
    paths["work"].mkdir()
    (paths["work"] / "train.py").write_text("print('hello')\n")
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(paths["jobs"]))
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(paths["state"]))
    monkeypatch.delenv("HPCSCHED_IMAGE", raising=False)
    return paths


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> FakeDaemon:
    fake = FakeDaemon()
    monkeypatch.setattr(client, "call", fake.call)
    monkeypatch.setattr(client, "ensure_daemon", fake.ensure)
    return fake


def sweep(dirs: dict[str, Path], *args: str) -> Result:
    return CliRunner().invoke(cli, ["sweep", "run", str(dirs["work"] / "train.py"), "--workdir", str(dirs["work"]), *args])


def records_dir(dirs: dict[str, Path]) -> Path:
    return sweep_store.sweeps_dir(str(dirs["state"]))


# --- dry run ------------------------------------------------------------------------------------


def test_dry_run_lists_each_trial_with_its_job_name_and_arguments(dirs: dict[str, Path], daemon: FakeDaemon) -> None:
    result = sweep(dirs, "--grid", "lr=0.1,0.01", "--grid", "bs=32,64", "--name", "lr", "--dry-run", "--", "--epochs", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"sweep lr: 4 trials of {dirs['work']}/train.py (dry run, nothing submitted)"
    assert lines[1].split() == ["TRIAL", "JOB", "JOB", "NAME", "SCRIPT", "ARGS"]
    assert lines[2].split() == ["0", "-", "lr-0", "--epochs", "3", "--lr", "0.1", "--bs", "32"]
    assert lines[5].split() == ["3", "-", "lr-3", "--epochs", "3", "--lr", "0.01", "--bs", "64"]
    assert daemon.ops == [] and not dirs["state"].exists()


def test_dry_run_json_is_the_record_without_job_ids_and_shell_characters_stay_plain(
    dirs: dict[str, Path], daemon: FakeDaemon
) -> None:
    result = sweep(dirs, "--random", "2", "--choice", "note=[bold]x;rm -rf ~", "--seed", "3", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["name"].startswith("sweep-") and record["spec"]["seed"] == 3
    assert [t["args"] for t in record["trials"]] == [["--note", "[bold]x;rm -rf ~"]] * 2
    assert all(t["job_id"] is None for t in record["trials"])
    text = sweep(dirs, "--random", "1", "--choice", "note=[bold]x;rm -rf ~", "--dry-run")
    assert "'[bold]x;rm -rf ~'" in text.stdout, "values are shell-quoted and never rich markup"
    assert daemon.ops == []


# --- refusals: nothing is submitted or written --------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--grid", "lr=0.1,,0.2"], "--grid: 'lr=0.1,,0.2': value 2 is empty"),
        (["--grid", "2lr=1"], "--grid: '2lr=1': '2lr' is not an option name"),
        (["--grid", "lr=1,2", "--grid", "lr=3"], "--grid: 'lr=3': lr is already searched by --grid 'lr=1,2'"),
        (["--choice", "opt=sgd,adam"], "--choice: 'opt=sgd,adam': random parameters are drawn only with --random N"),
        (["--random", "3", "--uniform", "lr=1:0"], "--uniform: 'lr=1:0': LOW (1.0) must be below HIGH (0.0)"),
        (["--grid", "a=1,2,3", "--max-trials", "2"], "--max-trials: the sweep has 3 trials"),
        (["--grid", "lr=1,2", "--", "--lr", "3"], "SCRIPT_ARGS: '--lr' after -- sets --lr, which the sweep searches"),
        (["--grid", "lr=1", "--name", ".hidden"], "--name: '.hidden' is not allowed"),
        (["--grid", "lr=1", "--name", "x" * 60], "is not allowed"),
        (["--grid", "lr=1", "--nodes", "0"], "--nodes: must be between 1 and 4096"),
        (["--grid", "lr=1", "--env", "SLURM_X=1"], "--env: SLURM_X cannot be set: it is set by Slurm"),
        ([], "--grid: nothing to search"),
    ],
)
def test_a_bad_spec_or_option_is_refused_and_nothing_is_submitted(
    dirs: dict[str, Path], daemon: FakeDaemon, args: list[str], expected: str
) -> None:
    result = sweep(dirs, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("hpcsched: error: ") and expected in result.stderr, result.stderr
    assert daemon.ops == [] and not dirs["state"].exists()


def test_a_bad_script_is_refused_before_any_trial_is_submitted(dirs: dict[str, Path], daemon: FakeDaemon) -> None:
    (dirs["work"] / "train.py").write_text("def f(:\n")
    result = sweep(dirs, "--grid", "lr=1,2")
    assert result.exit_code == 2 and "train.py:1: syntax error" in result.stderr
    assert daemon.ops == [] and not dirs["state"].exists()


# --- submission ---------------------------------------------------------------------------------


def test_each_trial_is_submitted_as_a_job_with_runs_options_and_recorded(dirs: dict[str, Path], daemon: FakeDaemon) -> None:
    result = sweep(
        dirs,
        "--grid",
        "lr=0.1,0.01",
        "--random",
        "2",
        "--uniform",
        "drop=0:0.5",
        "--name",
        "s",
        "--nodes",
        "1-2",
        "--env",
        "A=1",
        "--time",
        "10",
        "--",
        "--epochs",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in daemon.runs] == ["s-0", "s-1", "s-2", "s-3"]
    assert {(r["nodes"], r["time"], tuple(r["env"])) for r in daemon.runs} == {("1-2", "0-00:10:00", ("A=1",))}
    assert daemon.runs[3]["script_args"][:5] == ["--epochs", "3", "--lr", "0.01", "--drop"]
    assert daemon.runs[0]["script_args"][5] == daemon.runs[2]["script_args"][5], "each grid point, the same draws"
    record = sweep_store.load(records_dir(dirs), "s")
    assert [(t.job_name, t.job_id) for t in record.trials] == [("s-0", 101), ("s-1", 102), ("s-2", 103), ("s-3", 104)]
    assert record.store_id == "store-1" and record.error is None and record.spec["random"] == 2
    assert [list(t.args) for t in record.trials] == [r["script_args"] for r in daemon.runs]
    assert result.stdout.startswith(f"sweep s: 4 trials submitted (record: {records_dir(dirs) / 's.json'})")
    assert result.stdout.splitlines()[2].split()[:3] == ["0", "101", "s-0"]


def test_an_existing_sweep_name_is_refused_before_submitting(dirs: dict[str, Path], daemon: FakeDaemon) -> None:
    assert sweep(dirs, "--grid", "lr=1,2", "--name", "s").exit_code == 0
    daemon.ops.clear()
    result = sweep(dirs, "--grid", "lr=3", "--name", "s")
    assert result.exit_code == 2 and "--name: a sweep named 's' exists" in result.stderr
    assert daemon.ops == []
    assert [t.params["lr"] for t in sweep_store.load(records_dir(dirs), "s").trials] == ["1", "2"]


def test_a_failure_midway_reports_what_was_submitted_and_keeps_it_in_the_record(
    dirs: dict[str, Path], daemon: FakeDaemon
) -> None:
    daemon.fail_at = 3
    result = sweep(dirs, "--grid", "lr=1,2,3,4", "--name", "s", "--json")
    assert result.exit_code == 1
    assert "sweep s stopped after 2 of 4 trials" in result.stderr
    assert "submitted trials: 0 (job 101), 1 (job 102)" in result.stderr
    assert "not submitted: 2, 3" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "hpcsched: error: sweep s: trial 2 (s-2): sbatch: error: Batch job submission failed: Invalid account"
    )
    record = sweep_store.load(records_dir(dirs), "s")
    assert [t.job_id for t in record.trials] == [101, 102, None, None]
    assert record.error is not None and "Invalid account" in record.error
    assert json.loads(result.stdout)["trials"][1]["job_id"] == 102


# --- status and list ----------------------------------------------------------------------------


def write_progress(job_dir: Path, *lines: dict[str, Any]) -> None:
    job_dir.mkdir(parents=True)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (job_dir / "progress.jsonl").write_text(text + '{"event": "metrics", "time": 9')  # a line still being written


@pytest.fixture
def recorded(dirs: dict[str, Path], daemon: FakeDaemon) -> FakeDaemon:
    """A sweep of three trials: two submitted (jobs 7 and 8), one not; jobs with progress files."""
    trials = tuple(
        TrialRecord(i, f"lr-{i}", {"lr": lr, "opt": "sgd"}, ("--lr", lr, "--opt", "sgd"))
        for i, lr in enumerate(("0.1", "0.01", "0.001"))
    )
    record = (
        SweepRecord(
            name="lr",
            created=1_700_000_000.0,
            script=f"{dirs['work']}/train.py",
            workdir=str(dirs["work"]),
            spec={"grid": []},
            trials=trials,
            store_id="store-1",
        )
        .with_job(0, 7)
        .with_job(1, 8)
    )
    sweep_store.create(records_dir(dirs), record)
    write_progress(
        dirs["jobs"] / "7",
        {"event": "step", "time": 1.0, "step": 10, "attempt": 1, "loss": 2.0},
        {"event": "metrics", "time": 2.0, "step": 10, "attempt": 1, "metrics": {"val_acc": 0.5}},
        {"event": "metrics", "time": 3.0, "step": 20, "attempt": 2, "metrics": {"val_acc": 0.75, "val_loss": 0.123456}},
    )
    write_progress(dirs["jobs"] / "8", {"event": "step", "time": 1.0, "step": 3, "attempt": 1})
    daemon.jobs = [
        {"id": 7, "name": "lr-0", "state": "RUNNING", "job_dir": str(dirs["jobs"] / "7")},
        {"id": 8, "name": "lr-1", "state": "PENDING", "job_dir": str(dirs["jobs"] / "8")},
        {"id": 9, "name": "unrelated", "state": "RUNNING", "job_dir": str(dirs["jobs"] / "9")},
    ]
    return daemon


def test_status_shows_each_trial_with_its_parameters_and_latest_metrics(dirs: dict[str, Path], recorded: FakeDaemon) -> None:
    result = CliRunner().invoke(cli, ["sweep", "status", "lr"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"sweep lr: 2 of 3 trials submitted, script {dirs['work']}/train.py"
    assert lines[1].split() == ["TRIAL", "JOB", "STATE", "lr", "opt", "val_acc", "val_loss"]
    assert lines[2].split() == ["0", "7", "RUNNING", "0.1", "sgd", "0.75", "0.1235"]
    assert lines[3].split() == ["1", "8", "PENDING", "0.01", "sgd", "-", "-"]
    assert lines[4].split() == ["2", "-", "NOT_SUBMITTED", "0.001", "sgd", "-", "-"]
    assert result.stderr == ""


def test_status_json_has_every_trials_metric_history(dirs: dict[str, Path], recorded: FakeDaemon) -> None:
    result = CliRunner().invoke(cli, ["sweep", "status", "lr", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "lr" and [t["state"] for t in data["trials"]] == ["RUNNING", "PENDING", "NOT_SUBMITTED"]
    first = data["trials"][0]
    assert first["metrics"] == {"val_acc": 0.75, "val_loss": 0.123456}
    assert first["history"] == [
        {"time": 2.0, "step": 10, "metrics": {"val_acc": 0.5}},
        {"time": 3.0, "step": 20, "metrics": {"val_acc": 0.75, "val_loss": 0.123456}},
    ]
    assert data["trials"][1]["history"] == [] and first["params"] == {"lr": "0.1", "opt": "sgd"}


def test_status_marks_a_job_the_daemon_does_not_know_and_warns_of_another_store(
    dirs: dict[str, Path], recorded: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded.jobs = recorded.jobs[1:]
    monkeypatch.setattr(client, "ensure_daemon", lambda settings: {"store_id": "store-2"})
    result = CliRunner().invoke(cli, ["sweep", "status", "lr", "--json"])
    assert result.exit_code == 0, result.output
    assert [t["state"] for t in json.loads(result.stdout)["trials"]] == ["MISSING", "PENDING", "NOT_SUBMITTED"]
    assert "submitted to another daemon's store (store-1)" in result.stderr


def test_status_of_an_unknown_or_invalid_sweep_says_so(dirs: dict[str, Path], daemon: FakeDaemon) -> None:
    result = CliRunner().invoke(cli, ["sweep", "status", "nope"])
    assert result.exit_code == 1 and "hpcsched: error: no sweep named 'nope'" in result.stderr
    result = CliRunner().invoke(cli, ["sweep", "status", "../x"])
    assert result.exit_code == 2 and "NAME: '../x' is not allowed" in result.stderr
    assert daemon.ops == []


def test_list_shows_recorded_sweeps_and_warns_about_unreadable_ones(dirs: dict[str, Path], recorded: FakeDaemon) -> None:
    (records_dir(dirs) / "junk.json").write_text("[]")
    result = CliRunner().invoke(cli, ["sweep", "list"])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "CREATED", "SUBMITTED", "SCRIPT"]
    assert row.split()[0] == "lr" and row.split()[3:] == ["2/3", f"{dirs['work']}/train.py"]
    assert "junk.json: not a readable sweep record" in result.stderr
    data = json.loads(CliRunner().invoke(cli, ["sweep", "list", "--json"]).stdout)
    assert data == [
        {
            "name": "lr",
            "created": 1_700_000_000.0,
            "script": f"{dirs['work']}/train.py",
            "trials": 3,
            "submitted": 2,
            "error": None,
        }
    ]


def test_list_without_sweeps(dirs: dict[str, Path]) -> None:
    result = CliRunner().invoke(cli, ["sweep", "list"])
    assert (result.exit_code, result.stdout) == (0, "no sweeps\n")


# --- the options shared with hpcsched run -------------------------------------------------------


def test_sweep_run_takes_every_option_of_run_and_has_examples() -> None:
    own_run = {"name", "dry_run", "follow", "as_json", "help"}
    sweep_run = sweep_group.commands["run"]
    assert isinstance(sweep_run, click.Command)
    run_params = {p.name for p in run_command.params} - own_run
    assert run_params <= {p.name for p in sweep_run.params}
    help_text = CliRunner().invoke(cli, ["sweep", "run", "--help"]).stdout
    assert "Examples:" in help_text and "--log-uniform lr=1e-4:1e-1" in help_text


def test_a_record_that_cannot_be_created_stops_the_sweep_before_submitting(dirs: dict[str, Path], daemon: FakeDaemon) -> None:
    dirs["state"].mkdir()
    (dirs["state"] / "sweeps").write_text("not a directory")
    result = sweep(dirs, "--grid", "lr=1,2", "--name", "s")
    assert result.exit_code == 1 and "cannot write the sweep record" in result.stderr
    assert "run" not in daemon.ops


def test_a_record_that_cannot_be_updated_still_reports_the_submitted_jobs(
    dirs: dict[str, Path], daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[Path] = []
    real_write = sweep_store.write_json

    def failing_write(path: Path, data: dict[str, Any]) -> None:
        writes.append(path)
        if len(writes) >= 3:  # the new record, trial 0's update, then the disk is full
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(sweep_store, "write_json", failing_write)
    result = sweep(dirs, "--grid", "lr=1,2,3", "--name", "s")
    assert result.exit_code == 1
    assert "the record could not be updated (cannot write the sweep record" in result.stderr
    assert "submitted trials: 0 (job 101), 1 (job 102)" in result.stderr and "not submitted: 2" in result.stderr
    assert [t.job_id for t in sweep_store.load(records_dir(dirs), "s").trials] == [101, None, None]
