"""The daemon: one per user (A5), robust against junk on its socket (F5), owner-only socket (G3)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

import psutil
from conftest import CLI, UserSession


def test_A5_second_daemon_exits_already_running_with_pid(session: UserSession) -> None:
    pid = json.loads(session.hs("daemon", "status", "--json", check=False).stdout or "{}").get("pid")
    assert pid is None
    session.hs("daemon", "start")
    pid = json.loads(session.hs("daemon", "status", "--json").stdout)["pid"]
    python = os.path.join(os.path.dirname(CLI), "python")
    second = subprocess.run([python, "-m", "hpcsched.daemon"], user=session.user, group=session.user,
                            extra_groups=[], env=session.env, capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"already running, pid {pid}" in second.stderr


def _send(path: str, payload: bytes) -> bytes:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(15)
    sock.connect(path)
    try:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def test_F5_malformed_and_oversized_requests_leave_the_daemon_working(session: UserSession) -> None:
    session.hs("daemon", "start")
    path = str(session.daemon_file("sock"))
    # Root may connect, but the daemon serves only its owner: connect as the user via a child.
    script = (
        "import socket,sys\n"
        "for payload in [b'not json\\n', b'[1,2]\\n', b'{\"op\":\"rm -rf\"}\\n', b'x'*(2*1024*1024)]:\n"
        "    s=socket.socket(socket.AF_UNIX); s.settimeout(15); s.connect(sys.argv[1])\n"
        "    try: s.sendall(payload); s.shutdown(socket.SHUT_WR)\n"
        "    except OSError: pass\n"
        "    print(s.recv(4096).decode().strip()); s.close()\n"
    )
    out = subprocess.run(["python3", "-c", script, path], user=session.user, group=session.user, extra_groups=[],
                         env=session.env, capture_output=True, text=True, timeout=60)
    replies = [json.loads(line) for line in out.stdout.splitlines() if line]
    assert len(replies) == 4 and all(r["ok"] is False and r["kind"] == "protocol" for r in replies), out
    assert json.loads(session.hs("daemon", "status", "--json").stdout)["running"] is True


def test_G1_G3_socket_is_private_and_other_uids_are_refused(session: UserSession) -> None:
    session.hs("daemon", "start")
    path = session.daemon_file("sock")
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    reply = json.loads(_send(str(path), b'{"op":"status","args":{}}\n'))  # root is another uid
    assert reply["ok"] is False and reply["kind"] == "denied"
    listeners = [c for c in psutil.net_connections(kind="inet") if c.status == "LISTEN"
                 and c.pid == json.loads(session.hs("daemon", "status", "--json").stdout)["pid"]]
    assert listeners == [], "the daemon must not listen on TCP"


def test_daemon_stop_then_status_reports_not_running(session: UserSession) -> None:
    session.hs("daemon", "start")
    session.hs("daemon", "stop")
    assert session.hs("daemon", "status", check=False).returncode == 1
