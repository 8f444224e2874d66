"""The daemon's socket server on a real Unix socket, in a thread, over a fake Slurm: bad requests
close their connection and nothing else (F5), the caller is who the kernel says connected (G2,
G7), and another user's job cannot be touched through the socket (G1)."""

from __future__ import annotations

import json
import os
import pwd
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from fakeslurm import Core, answer, ask, call, serving

from hpcsched.cli import daemon as daemon_cli
from hpcsched.daemon import protocol
from hpcsched.daemon.rebalance import pass_lock
from hpcsched.daemon.server import Server
from hpcsched.daemon.service import Caller

ME = Caller(uid=os.getuid(), user=pwd.getpwuid(os.getuid()).pw_name)
OTHER_NAME = "hpcuser" if any(p.pw_name == "hpcuser" for p in pwd.getpwall()) else "nobody"
OTHER = Caller(uid=pwd.getpwnam(OTHER_NAME).pw_uid, user=OTHER_NAME)
as_root = pytest.mark.skipif(os.getuid() != 0, reason="changing uid needs root")


@pytest.fixture
def core(tmp_path: Path) -> Core:
    return Core(tmp_path)


@pytest.fixture
def personal(core: Core) -> Iterator[str]:
    """A personal daemon: only its own uid may use it."""
    with serving(core, read_timeout=0.5) as path:
        yield path


@pytest.fixture
def site(core: Core) -> Iterator[str]:
    """A site daemon: every uid may use it, each for their own jobs."""
    with serving(core, allowed=lambda uid: True) as path:
        yield path


def ids(reply: dict[str, Any] | None) -> list[int]:
    assert reply is not None and reply["ok"], reply
    return [j["id"] for j in reply["result"]]


def in_child(work: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """Run ``work`` in a forked child (which may change its uid) and return its answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(work()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and data, "the child failed"
    result: dict[str, Any] | None = json.loads(data)
    return result


def connect(path: str) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    return conn


# --- F5: bad requests --------------------------------------------------------------------------

BAD_REQUESTS = {
    "garbage": b"\x00\xff\xfe not json at all\n",
    "half-written": b'{"op": "status", "args": {"job": ',
    "not an object": b"[1, 2, 3]\n",
    "unknown op": b'{"op": "drop_tables"}\n',
    "args not an object": b'{"op": "status", "args": "all"}\n',
    "oversized": b'{"op": "ping", "pad": "' + b"x" * protocol.MAX_REQUEST_BYTES + b'"}\n',
    "deeply nested": b'{"op": "status", "args": {"x": ' + b"[" * 200_000 + b"\n",
    "empty": b"",
}


@pytest.mark.parametrize("request_bytes", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_F5_bad_request_is_refused_on_its_connection_and_the_next_request_is_served(
        core: Core, personal: str, request_bytes: bytes) -> None:
    reply = ask(personal, request_bytes)
    assert reply is not None and reply["ok"] is False and reply["kind"] == "protocol", reply
    assert call(personal, "ping")["result"]["store_id"] == core.store.store_id


def test_F5_a_silent_client_holds_no_one_up_and_is_cut_off(personal: str) -> None:
    with connect(personal) as silent:
        assert call(personal, "ping")["ok"], "served while another connection says nothing"
        reply = answer(silent, b"") if select.select([silent], [], [], 5.0)[0] else None
    assert reply is not None and "request not completed within" in reply["error"]


def test_F5_a_client_trickling_bytes_is_cut_off_while_it_is_still_sending(personal: str) -> None:
    """Slow loris: one byte every 50 ms never lets a single read time out; the request as a
    whole must still be complete within the read timeout (0.5 s here)."""
    with connect(personal) as slow:
        for _ in range(400):  # 20 s of trickling at most
            try:
                slow.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([slow], [], [], 0.05)[0]:
                break
        else:
            pytest.fail("the daemon kept reading a request that never ends")
        reply = answer(slow, b"")
    assert reply is not None and "request not completed within" in reply["error"]
    assert call(personal, "ping")["ok"]


# --- G2: the identity is the peer's uid ---------------------------------------------------------


def test_G2_a_request_naming_another_user_is_answered_as_the_connecting_user(core: Core, site: str) -> None:
    mine, _ = core.submit(ME)
    theirs, _ = core.submit(OTHER)
    claim = {"uid": OTHER.uid, "user": OTHER.user, "operator": True}
    request = {"op": "status", "args": claim, **claim, "caller": claim}
    assert ids(ask(site, json.dumps(request).encode())) == [mine]
    cancel = {"op": "cancel", "args": {"job": theirs, **claim}, **claim}
    refused = ask(site, json.dumps(cancel).encode())
    assert refused is not None and refused["kind"] == "denied"
    assert not core.store.get_job(theirs).cancel_requested  # type: ignore[union-attr]


def test_G2_a_job_request_naming_another_user_is_refused_and_records_nothing(core: Core, site: str) -> None:
    reply = call(site, "run", request={**core.request(), "uid": OTHER.uid})
    assert reply["kind"] == "validation" and reply["error"] == "uid: unknown request field"
    assert core.store.list_jobs() == []


# --- G1: another user's job, through the socket ----------------------------------------------


@as_root
@pytest.mark.parametrize(("op", "args"), [("cancel", {}), ("resize", {"nodes": 1}), ("log_path", {}), ("status", {})])
def test_G1_another_user_is_denied_my_job_through_the_socket(core: Core, site: str, op: str, args: dict[str, Any]) -> None:
    mine, slurm_id = core.submit(ME, nodes="1-2", start_nodes=2)
    before = core.store.get_job(mine), core.store.events(mine)

    def other_user() -> dict[str, Any] | None:
        os.setuid(OTHER.uid)
        return call(site, op, job=mine, **args)

    reply = in_child(other_user)
    assert reply is not None and reply["kind"] == "denied" and f"job {mine} belongs to another user" in reply["error"]
    assert (core.store.get_job(mine), core.store.events(mine)) == before
    assert not core.slurm.called("scancel") and core.slurm.jobs[slurm_id].state == "PENDING"


# --- G7: the uid at connect time ---------------------------------------------------------------


@as_root
def test_G7_a_client_that_drops_to_another_uid_after_connecting_is_still_served_as_itself(
        core: Core, personal: str) -> None:
    """The kernel records the peer's credentials at connect(). A process of the daemon's owner
    that connects, then becomes another user (setuid) before it writes its request, is answered
    as the owner: its own jobs. That is the guarantee: authorisation never changes on a
    connection. (Handing a connected socket to another process hands over that authority too,
    as with any open file; the client never does.)"""
    mine, _ = core.submit(ME)

    def connect_then_setuid() -> dict[str, Any] | None:
        conn = connect(personal)
        os.setuid(OTHER.uid)
        assert os.getuid() == OTHER.uid
        return answer(conn, protocol.encode({"op": "status", "args": {}}))

    assert ids(in_child(connect_then_setuid)) == [mine]


@as_root
def test_G7_a_client_that_connects_as_another_uid_then_regains_root_is_refused(core: Core, personal: str) -> None:
    """The reverse: a process connects while its effective uid is another user's, then takes
    root back before writing. The daemon refuses it as the uid it connected with."""
    core.submit(ME)

    def seteuid_connect_regain() -> dict[str, Any] | None:
        os.seteuid(OTHER.uid)
        conn = connect(personal)
        os.seteuid(0)
        return answer(conn, protocol.encode({"op": "status", "args": {}}))

    reply = in_child(seteuid_connect_regain)
    assert reply is not None and reply["kind"] == "denied"
    assert reply["error"] == f"uid {OTHER.uid} may not use this daemon"


@as_root
def test_G7_a_socket_another_user_connected_cancels_nothing_whoever_writes_on_it(core: Core, site: str) -> None:
    """In a site daemon (every uid served): another user connects and the request is written
    by root on that connection. The cancel of the owner's job is refused, as that user."""
    mine, slurm_id = core.submit(ME)

    def other_connects_root_writes() -> dict[str, Any] | None:
        os.seteuid(OTHER.uid)
        conn = connect(site)
        os.seteuid(0)
        return answer(conn, protocol.encode({"op": "cancel", "args": {"job": mine}}))

    reply = in_child(other_connects_root_writes)
    assert reply is not None and reply["kind"] == "denied"
    assert not core.store.get_job(mine).cancel_requested  # type: ignore[union-attr]
    assert core.slurm.jobs[slurm_id].state == "PENDING"


# --- H2: one rebalance pass at a time, through the socket --------------------------------------


def test_H2_rebalance_while_another_pass_runs_answers_busy_and_changes_nothing(core: Core, personal: str) -> None:
    job_id, _ = core.submit(ME, nodes="1-3", start_nodes=2)
    calls, events = len(core.slurm.calls), core.store.events(job_id)
    with pass_lock(core.service.rebalancer.state_dir):  # a pass started by cron holds the lock
        reply = call(personal, "rebalance")
        core.service.admission_pass()  # the monitor's own pass steps aside too, quietly
    assert reply["kind"] == "busy" and "this one changed nothing" in reply["error"]
    assert (len(core.slurm.calls), core.store.events(job_id)) == (calls, events)


# --- stopping: a shutdown request or a signal ends the accept loop at once ----------------------


def serve_until_stopped(core: Core, tmp_path: Path) -> tuple[Server, str, threading.Thread]:
    """The server as the daemon runs it (the service's stop event is the loop's), waiting an hour
    between idle checks: only a wake-up can end the loop within the test."""
    path = str(tmp_path / "daemon.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    server = Server(sock, core.service, allowed=lambda uid: uid == os.getuid(), idle_wake_s=3600)
    thread = threading.Thread(target=server.serve, args=(core.service.stop,), daemon=True)
    thread.start()
    return server, path, thread


def test_a_shutdown_request_ends_the_accept_loop_without_waiting_for_its_idle_check(core: Core, tmp_path: Path) -> None:
    server, path, thread = serve_until_stopped(core, tmp_path)
    assert call(path, "ping")["ok"]
    reply = call(path, "shutdown")
    assert reply["ok"] and reply["result"]["pid"] == os.getpid()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the loop still waits for a connection after the daemon was asked to stop"
    server.close(path)
    assert not os.path.exists(path)
    server.wake()  # a request answered after close() writes nowhere


def test_a_stop_from_a_signal_handler_ends_the_accept_loop_through_wake(core: Core, tmp_path: Path) -> None:
    server, path, thread = serve_until_stopped(core, tmp_path)
    core.service.stop.set()  # what the SIGTERM handler does, then it wakes the server
    server.wake()
    thread.join(timeout=30)
    assert not thread.is_alive()
    server.close(path)


def test_daemon_stop_counts_an_exited_daemon_not_yet_reaped_as_stopped() -> None:
    """A detached daemon's parent is init; until init reaps it, the exited daemon is a zombie
    whose pid still exists. `hpcsched daemon stop` must not wait for the reaping."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits at once
        os._exit(0)
    try:
        deadline = time.monotonic() + 30
        while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert psutil.pid_exists(pid), "the exited child is a zombie until it is reaped"
        assert not daemon_cli.running(pid)
        assert daemon_cli.running(os.getpid())
    finally:
        os.waitpid(pid, 0)
    assert not daemon_cli.running(pid)


def test_a_wake_up_without_a_stop_leaves_the_server_answering(core: Core, tmp_path: Path) -> None:
    server, path, thread = serve_until_stopped(core, tmp_path)
    server.wake()
    assert call(path, "ping")["ok"] and thread.is_alive()
    assert not select.select([server._wake_r], [], [], 1)[0], "the wake-up pipe was drained"
    core.service.stop.set()
    server.wake()
    thread.join(timeout=30)
    assert not thread.is_alive()
    server.close(path)
