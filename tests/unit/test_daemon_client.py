"""The CLI's side of the socket when the daemon dies in the middle of a request: a clear error
that says the outcome is unknown, never a traceback."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hpcsched.config import Settings
from hpcsched.daemon import client, protocol
from hpcsched.errors import DaemonError


def serve_once(path: Path, answer: Callable[[socket.socket], None]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def handle() -> None:
        conn, _ = server.accept()
        conn.recv(1 << 16)
        answer(conn)
        conn.close()
        server.close()

    thread = threading.Thread(target=handle, daemon=True)
    thread.start()
    return thread


def settings(tmp_path: Path) -> Settings:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return Settings(state_dir=str(state), jobs_dir=str(tmp_path / "jobs"), poll_interval=1.0, image="img",
                    launcher_python="python3")


def reset(conn: socket.socket) -> None:
    """Close with RST, as the kernel does for a SIGKILLed daemon with unread data."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@pytest.mark.parametrize("answer, what", [
    (lambda conn: None, "closed the connection without answering"),
    (lambda conn: conn.sendall(b'{"ok": tr'), "cut off or garbled"),
    (reset, "closed the connection without answering"),
])
def test_a_daemon_that_dies_mid_request_gives_a_clear_error_saying_the_outcome_is_unknown(
        tmp_path: Path, answer: Callable[[socket.socket], None], what: str) -> None:
    cfg = settings(tmp_path)
    thread = serve_once(Path(cfg.socket_path), answer)
    with pytest.raises(DaemonError) as raised:
        client.call(cfg, "run", {"request": {}}, timeout=10)
    thread.join(timeout=10)
    message = str(raised.value)
    assert "check `hpcsched status`" in message and "run" in message
    assert what in message or "connection to the daemon broke" in message, message


def test_no_daemon_is_daemon_not_running(tmp_path: Path) -> None:
    cfg = settings(tmp_path)
    assert not os.path.exists(cfg.socket_path)
    with pytest.raises(client.DaemonNotRunning):
        client.call(cfg, "ping", timeout=5)


def test_a_daemon_older_than_the_command_gives_the_way_out_not_a_protocol_error(tmp_path: Path) -> None:
    """After an upgrade the daemon that kept running does not know a newer command's operation."""
    cfg = settings(tmp_path)
    older = protocol.OPS - {"events"}

    def answer_as_older_daemon(conn: socket.socket) -> None:
        try:
            protocol.decode_request(b'{"op": "events", "args": {"job": 1}}', older)
        except protocol.ProtocolError as e:  # what the server answers to a request it cannot decode
            conn.sendall(protocol.encode({"ok": False, "kind": "protocol", "error": str(e)}))

    thread = serve_once(Path(cfg.socket_path), answer_as_older_daemon)
    with pytest.raises(DaemonError) as raised:
        client.call(cfg, "events", {"job": 1}, timeout=10)
    thread.join(timeout=10)
    assert "does not know `events`" in str(raised.value) and "`hpcsched daemon stop`" in str(raised.value)


def test_a_daemon_that_ended_without_a_word_in_a_full_state_directory_says_it_is_full() -> None:
    full = client.silent_start(client.NO_MESSAGE, "/home/alice/.local/state/hpcsched", lambda _path: 4096)
    assert full.startswith("its state directory /home/alice/.local/state/hpcsched is full (4 KiB free)")
    roomy = client.silent_start(client.NO_MESSAGE, "/st", lambda _path: 10 << 30)
    assert roomy.startswith(client.NO_MESSAGE) and "quota" in roomy  # a quota is not seen in the free space
    assert client.silent_start("store is locked by pid 12", "/st", lambda _path: 0) == "store is locked by pid 12"
