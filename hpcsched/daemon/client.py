"""The CLI's side of the socket: send one request, and start the personal daemon when needed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from hpcsched.config import Settings
from hpcsched.daemon import protocol, statedir
from hpcsched.errors import AccessDenied, DaemonError, DaemonNotRunning, JobNotFound, ValidationError

START_TIMEOUT = 20.0
NO_LOG, NO_MESSAGE = "no log", "no message in its log"
MIN_DAEMON_ROOM = 1 << 20  # a daemon needs this much room in its state directory to start
_KINDS: dict[str, type[Exception]] = {
    "validation": ValidationError,
    "not_found": JobNotFound,
    "denied": AccessDenied,
}


def call(settings: Settings, op: str, args: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
    """Send one request to the personal daemon; return its result or raise the matching error."""
    return send(settings.socket_path, op, args, timeout,
                f"(check the state directory {settings.state_dir}, HPCSCHED_STATE_DIR)")


def send(path: str, op: str, args: dict[str, Any] | None = None, timeout: float = 120.0, hint: str = "",
         who: str = "daemon") -> Any:
    """Send one request to the socket at ``path`` (the personal daemon's, or the site
    coordinator's: ``who``); return its result or raise the matching error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise DaemonNotRunning(f"no hpcsched {who} answers on {path}") from None
    except OSError as e:
        sock.close()
        raise DaemonError(f"cannot reach the {who}'s socket {path}: {e.strerror or e} {hint}".rstrip()) from None
    try:
        sock.sendall(protocol.encode({"op": op, "args": args or {}}))
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise DaemonError(f"the {who} did not answer within {timeout:.0f} s") from None
    except OSError as e:
        raise DaemonError(_cut_off(op, f"the connection to the {who} broke ({e.strerror or e})")) from None
    finally:
        sock.close()
    if not data:
        raise DaemonError(_cut_off(op, f"the {who} closed the connection without answering"))
    try:
        response = protocol.decode_response(data)
    except protocol.ProtocolError as e:
        raise DaemonError(_cut_off(op, f"the {who}'s answer was cut off or garbled ({e})")) from None
    if response["ok"]:
        return response.get("result")
    kind = str(response.get("kind", "error"))
    message = str(response.get("error", "unknown error"))
    if kind == "protocol" and message == f"unknown operation {op!r}":
        raise DaemonError(_older(op, who))
    if kind == "validation":
        field, _, rest = message.partition(": ")
        raise ValidationError(field, rest or message)
    raise _KINDS.get(kind, DaemonError)(message)


def _older(op: str, who: str) -> str:
    """The message for an operation the running daemon does not know: it started from an older
    hpcsched than the command's (an upgrade while it ran)."""
    if who == "daemon":
        return (f"the running daemon does not know `{op}`: it started from an older hpcsched than this command. "
                "Stop it with `hpcsched daemon stop` (your jobs keep running; the next command starts the new one)")
    return f"the {who} does not know `{op}`: it runs an older hpcsched than this command; the site's staff restart it"


def _cut_off(op: str, what: str) -> str:
    """The message for a request whose answer never came: the daemon may have stopped or died
    while handling it, so whether it took effect is unknown until the user looks."""
    hint = "; whether it took effect is unknown: check `hpcsched status`" if op != "ping" else ""
    return f"{what} (it may have stopped or crashed while handling `{op}`){hint}"


def ensure_daemon(settings: Settings) -> dict[str, Any]:
    """Ping the daemon; start one (personal mode) if none answers. Returns the ping result."""
    try:
        return dict(call(settings, "ping", timeout=10))
    except DaemonNotRunning:
        pass
    pid = start_daemon(settings)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return dict(call(settings, "ping", timeout=10))
        except DaemonNotRunning:
            # Ours ended: unless another command's daemon won the lock, none will answer; say why now.
            why = silent_start(_last_log_line(settings.log_path), settings.state_dir) if _exited(pid) else ""
            if why and "already running" not in why:
                raise DaemonError(f"the daemon could not start: {why} (log: {settings.log_path})") from None
            time.sleep(0.05)
    raise DaemonNotRunning(f"the daemon did not start within {START_TIMEOUT:.0f} s; see {settings.log_path}")


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has ended (a daemon that started answers before it would)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def silent_start(why: str, state_dir: str, free_bytes: Callable[[str], int] | None = None) -> str:
    """``why`` a daemon that left no message in its log ended, with the likeliest cause: it could
    not write the log (nor its store) because the state directory's disk or the user's quota is
    full."""
    if why not in (NO_LOG, NO_MESSAGE):
        return why
    try:
        free = (free_bytes or (lambda path: shutil.disk_usage(path).free))(state_dir)
    except OSError:
        free = -1
    if 0 <= free < MIN_DAEMON_ROOM:
        return (f"its state directory {state_dir} is full ({free // 1024} KiB free), so it could write neither "
                "its log nor its store: free some space there (`df -h`, `quota`)")
    return f"{why}: could it write there? (is the disk or your quota of {state_dir} full? `df -h`, `quota`)"


def _last_log_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [x for x in f.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        return NO_LOG
    return lines[-1].strip() if lines else NO_MESSAGE


def start_daemon(settings: Settings) -> int:
    """Start ``python -m hpcsched.daemon`` detached from this terminal; returns its pid."""
    try:
        statedir.private_directory(settings.state_dir)
        for path in (settings.lock_path, settings.store_path, settings.socket_path):
            statedir.refuse_link(path)  # the daemon refuses them too; say so here, at once
        logf = os.fdopen(statedir.open_private_file(settings.log_path, os.O_WRONLY | os.O_APPEND), "ab")
    except OSError as e:
        raise DaemonError(f"cannot start the daemon: state directory {settings.state_dir}: {e.strerror or e} "
                          "(HPCSCHED_STATE_DIR must name a directory of yours on a local disk)") from None
    warning = statedir.local_disk_warning(settings.state_dir)
    if warning:
        print(f"hpcsched: warning: {warning}", file=sys.stderr)
    with logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpcsched.daemon"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
            cwd="/", close_fds=True,
        )
    return proc.pid
