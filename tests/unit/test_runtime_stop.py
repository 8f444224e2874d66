"""Stop requests: real signals, the stop file, the agreement of ranks, and the shutdown watchdog."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcsched.runtime.stop import (
    ShutdownWatchdog,
    StopReason,
    StopRequest,
    agree,
    write_checkpointed_marker,
)


@pytest.fixture
def request_() -> Iterator[StopRequest]:
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM)}
    stop = StopRequest()
    yield stop
    stop.uninstall()
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize(("signum", "reason"), [(signal.SIGUSR1, StopReason.SIGUSR1), (signal.SIGTERM, StopReason.SIGTERM)])
def test_a_real_signal_sets_the_flag(request_: StopRequest, signum: int, reason: StopReason) -> None:
    assert request_.install()
    assert request_.local_reason() is StopReason.NONE
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # the handler runs at the next bytecode boundary of the main thread
    assert request_.local_reason() is reason


def test_uninstall_restores_the_previous_handlers(request_: StopRequest) -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    request_.install()
    assert signal.getsignal(signal.SIGUSR1) != previous
    request_.uninstall()
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_ignored_after_the_stop_so_a_late_sigterm_cannot_kill_the_exit(request_: StopRequest) -> None:
    request_.install()
    request_.ignore_further()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGTERM)  # would end pytest if it were not ignored
    time.sleep(0.01)


def test_handlers_need_the_main_thread() -> None:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(StopRequest().install()))
    thread.start()
    thread.join()
    assert results == [False]


def test_stop_file_fallback_is_rate_limited(tmp_path: Path) -> None:
    now = [100.0]
    stop_file = tmp_path / "stop-request"
    stop = StopRequest(stop_file, file_interval_s=1.0, clock=lambda: now[0])
    assert stop.local_reason() is StopReason.NONE
    stop_file.touch()
    now[0] += 0.5
    assert stop.local_reason() is StopReason.NONE  # not looked at again yet
    now[0] += 0.6
    assert stop.local_reason() is StopReason.STOP_FILE
    stop.consume_stop_file()
    assert not stop_file.exists()
    assert stop.local_reason() is StopReason.STOP_FILE  # a seen request stays seen


def test_without_a_job_directory_there_is_no_stop_file() -> None:
    assert StopRequest(None).local_reason() is StopReason.NONE


def test_agreement_examples() -> None:
    assert agree([]) is StopReason.NONE
    assert agree([0, 0, 0, 0]) is StopReason.NONE
    assert agree([0, StopReason.STOP_FILE, 0]) is StopReason.STOP_FILE
    assert agree([StopReason.SIGUSR1, StopReason.STOP_FILE]) is StopReason.SIGUSR1
    assert agree([0, StopReason.SIGTERM, StopReason.SIGUSR1]) is StopReason.SIGTERM


@given(st.lists(st.lists(st.sampled_from(list(StopReason)), min_size=1, max_size=8), min_size=1, max_size=20))
def test_all_ranks_stop_after_the_same_step(flags_per_step: list[list[StopReason]]) -> None:
    """Each step every rank contributes its flag; all ranks see the same result, at the first flagged step."""
    decisions = [agree(flags) for flags in flags_per_step]
    first = next((i for i, flags in enumerate(flags_per_step) if any(flags)), None)
    stops = [i for i, d in enumerate(decisions) if d]
    assert (stops[0] if stops else None) == first
    for flags, decision in zip(flags_per_step, decisions, strict=True):
        assert decision == max(flags)


def test_watchdog_exits_with_the_code_current_at_firing() -> None:
    exits: list[int] = []
    fired = threading.Event()
    state = {"checkpointed": False}

    def fake_exit(code: int) -> None:
        exits.append(code)
        fired.set()

    watchdog = ShutdownWatchdog(0.05, lambda: 75 if state["checkpointed"] else 74, exit=fake_exit)
    watchdog.start()
    state["checkpointed"] = True
    assert fired.wait(5)
    assert exits == [75]


def test_cancelled_watchdog_does_not_fire() -> None:
    exits: list[int] = []
    watchdog = ShutdownWatchdog(0.05, lambda: 74, exit=exits.append)
    watchdog.start()
    watchdog.cancel()
    time.sleep(0.1)
    assert exits == []


def test_marker_is_written_whole(tmp_path: Path) -> None:
    marker = tmp_path / "attempts" / "3" / "checkpointed"
    write_checkpointed_marker(marker, step=42, checkpoint=tmp_path / "ckpt" / "step-42")
    record = json.loads(marker.read_text())
    assert record["step"] == 42 and record["checkpoint"] == str(tmp_path / "ckpt" / "step-42")
    assert isinstance(record["time"], float)
    assert [p.name for p in marker.parent.iterdir()] == ["checkpointed"]


def test_marker_failure_is_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "attempts"
    blocker.write_text("not a directory")
    assert not write_checkpointed_marker(blocker / "1" / "checkpointed", step=1, checkpoint=tmp_path)
    assert "could not write" in capsys.readouterr().err
