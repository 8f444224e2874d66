"""The progress line of long operations (``sweep run``, ``cancel --wait``): in place on a terminal,
plain lines at most every few seconds elsewhere, nothing with --json. Clock and stream injected."""

from __future__ import annotations

import io
import json
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcsched.cli import jobs as jobs_module
from hpcsched.cli import progress as progress_module
from hpcsched.cli.main import cli
from hpcsched.cli.progress import Progress
from hpcsched.daemon import client


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_on_a_terminal_one_line_is_rewritten_in_place() -> None:
    stream = io.StringIO()
    progress = Progress(stream, tty=True)
    progress.update("sweep s: 1 of 12 trials submitted")
    progress.update("sweep s: 2 of 12 trials submitted")
    progress.update("done")
    progress.done()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.split("\r")[1:] == [
        "sweep s: 1 of 12 trials submitted",
        "sweep s: 2 of 12 trials submitted",
        "done".ljust(len("sweep s: 2 of 12 trials submitted")) + "\n",
    ], "a shorter line blanks what is left of the longer one"


def test_off_a_terminal_plain_lines_at_most_every_interval() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(stream, clock=clock, interval=5.0, tty=False)
    for step, at in enumerate([0.0, 1.0, 4.9, 5.0, 6.0, 11.0, 11.5]):
        clock.now = 100.0 + at
        progress.update(f"at {at} (update {step})")
    progress.done()
    assert stream.getvalue().splitlines() == ["at 0.0 (update 0)", "at 5.0 (update 3)", "at 11.0 (update 5)"]
    assert "\r" not in stream.getvalue()


@pytest.mark.parametrize("tty", [True, False])
def test_disabled_progress_writes_nothing(tty: bool) -> None:
    stream = io.StringIO()
    progress = Progress(stream, enabled=False, tty=tty)
    progress.update("job 3: RUNNING")
    progress.done()
    assert stream.getvalue() == ""


def test_done_without_a_line_writes_nothing() -> None:
    stream = io.StringIO()
    Progress(stream, tty=True).done()
    assert stream.getvalue() == ""


# --- the commands ----------------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The commands' clock and sleep: a wait of any length passes at once."""
    fake = FakeClock()
    fake_time = types.SimpleNamespace(monotonic=fake, sleep=fake.sleep)
    monkeypatch.setattr(progress_module, "time", fake_time)
    monkeypatch.setattr(jobs_module, "time", fake_time)
    return fake


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "train.py").write_text("print('hello')\n")
    return tmp_path


def fake_daemon(monkeypatch: pytest.MonkeyPatch, states: list[str]) -> None:
    """``run`` answers consecutive ids; ``cancel`` then each ``status`` answer the next state."""
    answers = iter(states)
    runs: list[int] = []

    def call(settings: Any, op: str, args: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
        if op == "run":
            runs.append(1)
            return {"id": 100 + len(runs)}
        job = {"id": 7, "state": next(answers)}
        return job if op == "cancel" else [job]

    monkeypatch.setattr(client, "call", call)
    monkeypatch.setattr(client, "ensure_daemon", lambda settings: {"store_id": "store-1"})


def test_cancel_wait_shows_the_wait_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, state: Path
) -> None:
    fake_daemon(monkeypatch, ["RUNNING"] * 25 + ["CANCELLED"])
    result = CliRunner().invoke(cli, ["cancel", "7", "--wait"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "job 7: CANCELLED\n"
    assert result.stderr.splitlines() == [
        f"job 7: RUNNING, waiting for Slurm to end it ({s} s)" for s in (0, 5, 10)
    ], "0.5 s polls, a line every 5 s"


def test_cancel_wait_json_prints_no_progress(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, state: Path) -> None:
    fake_daemon(monkeypatch, ["RUNNING"] * 25 + ["CANCELLED"])
    result = CliRunner().invoke(cli, ["cancel", "7", "--wait", "--json"])
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["state"] == "CANCELLED"


@pytest.mark.parametrize("as_json", [False, True])
def test_sweep_run_shows_trials_submitted(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, state: Path, as_json: bool
) -> None:
    fake_daemon(monkeypatch, [])
    args = ["sweep", "run", str(state / "train.py"), "--workdir", str(state), "--grid", "lr=1,2,3", "--name", "s"]
    result = CliRunner().invoke(cli, args + ["--json"] * as_json)
    assert result.exit_code == 0, result.output
    expected = [] if as_json else ["sweep s: 1 of 3 trials submitted"]  # the clock stands still: one line
    assert result.stderr.splitlines() == expected
