"""The Unix socket server. No TCP listener, ever (G3).

The socket lives in a directory only its owner can enter; the kernel tells us who is calling
(SO_PEERCRED) and in personal mode only the daemon's own uid is served. Each connection carries
one request; at most ``MAX_CONNECTIONS`` are served at once, beyond that callers are told the
daemon is busy (back-pressure, H1). A malformed request closes its connection and nothing else.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Set
from typing import Any, Protocol

from hpcsched.daemon import protocol, statedir
from hpcsched.daemon.rebalance import RebalanceBusy
from hpcsched.daemon.service import Caller
from hpcsched.errors import AccessDenied, HpcschedError, JobNotFound, ValidationError
from hpcsched.slurm.runner import SlurmCommandError

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 64
READ_TIMEOUT = 10.0

ERROR_KINDS: list[tuple[type[BaseException], str]] = [
    (ValidationError, "validation"),
    (RebalanceBusy, "busy"),
    (JobNotFound, "not_found"),
    (AccessDenied, "denied"),
    (SlurmCommandError, "slurm"),
    (HpcschedError, "error"),
]


class Handler(Protocol):
    def handle(self, op: str, args: dict[str, Any], caller: Caller) -> Any: ...


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def bind_socket(path: str) -> socket.socket:
    """Bind the socket in a private directory (the caller holds the daemon lock, so a leftover
    socket of ours is stale; anything else found at the path is refused, G5)."""
    statedir.private_directory(os.path.dirname(path))
    statedir.check_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


class Server:
    def __init__(self, sock: socket.socket, service: Handler, allowed: Callable[[int], bool],
                 is_operator: Callable[[int], bool] = lambda uid: False, read_timeout: float = READ_TIMEOUT,
                 ops: Set[str] = protocol.OPS, idle_wake_s: float = 0.5) -> None:
        self.sock = sock
        self.idle_wake_s = idle_wake_s
        self.ops = ops
        self.service = service
        self.allowed = allowed
        self.is_operator = is_operator
        self.read_timeout = read_timeout
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stop = threading.Event()
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def close(self, path: str) -> None:
        """Stop listening and remove the socket file."""
        self.sock.close()
        with self._wake_lock:  # a request still being answered must not write to a reused fd
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_r = self._wake_w = -1
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def serve(self, stop: threading.Event) -> None:
        """Answer requests until ``stop`` is set; whoever sets it calls ``wake`` (a request such as
        ``shutdown`` is followed by one), or the loop sees it within ``idle_wake_s``."""
        self._stop = stop
        self.sock.setblocking(False)
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not stop.is_set():
            try:
                ready = {fd for fd, _ in poller.poll(self.idle_wake_s * 1000)}
                if self._wake_r in ready:
                    self._drain_wake_ups()
                if self.sock.fileno() not in ready:
                    continue
                conn, _ = self.sock.accept()
            except BlockingIOError:  # the pipe is empty, or a caller gave up before accept
                continue
            except OSError:
                if stop.is_set():
                    return
                raise
            if not self.slots.acquire(blocking=False):
                self._reply(conn, {"ok": False, "kind": "busy", "error": "daemon is busy, try again"})
                conn.close()
                continue
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            uid = peer_uid(conn)
            try:
                data = self._read(conn)
                if not self.allowed(uid):
                    log.warning("refused connection from uid %s", uid)
                    self._reply(conn, {"ok": False, "kind": "denied", "error": f"uid {uid} may not use this daemon"})
                    return
                op, args = protocol.decode_request(data, self.ops)
            except protocol.ProtocolError as e:
                log.warning("bad request from uid %s: %s", uid, e)
                self._reply(conn, {"ok": False, "kind": "protocol", "error": str(e)})
                return
            caller = Caller(uid=uid, user=statedir.owner_name(uid), operator=self.is_operator(uid))
            self._reply(conn, self._dispatch(op, args, caller))
        except OSError as e:
            log.info("connection dropped: %s", e)
        finally:
            conn.close()
            self.slots.release()
            if self._stop.is_set():
                self.wake()

    def _drain_wake_ups(self) -> None:
        """Empty the wake-up pipe, so that a wake-up without a stop cannot spin the loop."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def wake(self) -> None:
        """End the accept loop's wait now, not at its next timeout (safe in a signal handler)."""
        if not self._wake_lock.acquire(blocking=False):
            return  # another wake-up is under way, or close() runs: either way nothing to do
        try:
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the loop wakes anyway
            pass
        finally:
            self._wake_lock.release()

    def _dispatch(self, op: str, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        try:
            return {"ok": True, "result": self.service.handle(op, args, caller)}
        except Exception as e:  # every error becomes an answer; the daemon goes on
            for cls, kind in ERROR_KINDS:
                if isinstance(e, cls):
                    return {"ok": False, "kind": kind, "error": str(e)}
            log.exception("internal error in %s", op)
            return {"ok": False, "kind": "internal", "error": f"internal error: {type(e).__name__}: {e}"}

    def _read(self, conn: socket.socket) -> bytes:
        """The request, which must be complete within ``read_timeout`` in all: a client that
        trickles bytes (slow loris) holds a connection slot no longer than one that sends none."""
        deadline = time.monotonic() + self.read_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                conn.settimeout(remaining)
                chunk = conn.recv(65536)
            except TimeoutError:
                raise protocol.ProtocolError(f"request not completed within {self.read_timeout:.0f} s") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > protocol.MAX_REQUEST_BYTES:
                raise protocol.ProtocolError(f"request larger than {protocol.MAX_REQUEST_BYTES} bytes")
            if chunk.endswith(b"\n"):
                break
        return b"".join(chunks)

    @staticmethod
    def _reply(conn: socket.socket, message: dict[str, Any]) -> None:
        try:
            conn.sendall(protocol.encode(message))
        except OSError:
            pass
