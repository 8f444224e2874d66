"""Fuzzing the daemon's socket (F5): whatever bytes or JSON a client sends, the answer is a valid
result or a structured error of a known kind (never an internal error, never a dropped
connection or an exception in the server's thread), and the daemon answers ping afterwards."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from typing import Any

import pytest
from fakeslurm import Core, ask, call, serving
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcsched.daemon import protocol
from hpcsched.daemon.server import ERROR_KINDS
from hpcsched.daemon.service import Caller

KINDS = {kind for _, kind in ERROR_KINDS} | {"protocol"}
ARG_NAMES = ["job", "nodes", "mode", "attempt", "limit", "wait_s", "dry_run", "request", "submit_now", "uid", "user"]
FUZZ = settings(max_examples=200, deadline=None, database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(0, 4) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {"op": st.sampled_from(sorted(protocol.OPS)) | st.text(max_size=12),
     "args": st.fixed_dictionaries({}, optional={name: json_values for name in ARG_NAMES})
     | st.dictionaries(st.text(max_size=8), json_values, max_size=4)},
    optional={"uid": st.integers(), "user": st.text(max_size=8)},
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Core, str]]:
    """A personal daemon with a job of its owner (ids 1, 2) and one of another user (id 3)."""
    core = Core(tmp_path_factory.mktemp("fuzz"))
    me = Caller(uid=os.getuid(), user=pwd.getpwuid(os.getuid()).pw_name)
    for caller, nodes in ((me, "1"), (me, "1-3"), (Caller(uid=4242, user="other"), "2")):
        core.submit(caller, nodes=nodes)
    with serving(core) as path:
        yield core, path


def assert_structured(reply: dict[str, Any] | None) -> None:
    assert reply is not None, "the connection was closed without an answer"
    if not reply["ok"]:
        assert reply["kind"] in KINDS and reply["kind"] != "internal", reply
        assert isinstance(reply["error"], str) and reply["error"], reply


@FUZZ
@given(data=st.binary(max_size=512))
def test_F5_fuzz_any_bytes_get_a_structured_answer_and_the_daemon_stays_up(daemon: tuple[Core, str], data: bytes) -> None:
    _, path = daemon
    assert_structured(ask(path, data))
    assert call(path, "ping")["ok"]


@FUZZ
@given(message=requests)
def test_F5_fuzz_any_json_request_gets_a_result_or_a_structured_error(daemon: tuple[Core, str],
                                                                      message: dict[str, Any]) -> None:
    _, path = daemon
    assert_structured(ask(path, json.dumps(message).encode() + b"\n"))
    assert call(path, "ping")["ok"]
