"""``hpcsched events JOB``: what happened to a job, in words, and as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hpcsched.cli.main import cli
from hpcsched.daemon import client

WHEN = time.mktime((2026, 12, 6, 12, 44, 28, 0, 0, -1))
EVENTS = [
    {"time": WHEN, "kind": "submitted", "detail": "Slurm job 2160"},
    {"time": WHEN + 1, "kind": "handover_held",
     "detail": "Slurm job 2159 waits for nodes in debug ahead of attempt 2; the job trains on at 2 node(s)"},
    {"time": WHEN + 2, "kind": "rebalance", "detail": json.dumps(
        {"job": 1, "action": "grow", "current_nodes": 2, "target_nodes": 3, "reason": "3 nodes gain 40%", "applied": False})},
    {"time": WHEN + 3, "kind": "rebalance", "detail": "not json"},
    {"time": WHEN + 4, "kind": "cancel_requested", "detail": ""},
]


def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(tmp_path / "jobs"))
    calls: list[tuple[str, dict[str, Any]]] = []

    def call(settings: Any, op: str, arguments: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
        calls.append((op, arguments or {}))
        return {"job": 1, "events": EVENTS}

    monkeypatch.setattr(client, "ensure_daemon", lambda settings: {"store_id": "s"})
    monkeypatch.setattr(client, "call", call)
    result = CliRunner().invoke(cli, ["events", "1", *args])
    assert result.exit_code == 0, result.output
    return result.output, calls


def test_each_event_is_one_line_with_its_local_time_and_a_rebalance_decision_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, calls = events(tmp_path, monkeypatch)
    assert calls == [("events", {"job": 1})]
    assert out.splitlines() == [
        "2026-12-06 12:44:28  submitted        Slurm job 2160",
        "2026-12-06 12:44:29  handover_held    Slurm job 2159 waits for nodes in debug ahead of attempt 2; "
        "the job trains on at 2 node(s)",
        "2026-12-06 12:44:30  rebalance        grow 2 -> 3 nodes: 3 nodes gain 40% (not carried out)",
        "2026-12-06 12:44:31  rebalance        not json",
        "2026-12-06 12:44:32  cancel_requested",
    ]


def test_json_is_what_the_daemon_answered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = events(tmp_path, monkeypatch, "--json")
    assert json.loads(out) == {"job": 1, "events": EVENTS}
