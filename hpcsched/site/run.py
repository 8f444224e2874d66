"""Running the coordinator: under a service account (never root), one per state directory (a
lock), its socket open to every local user (the kernel tells it who calls), its pass on a timer.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hpcsched.daemon import statedir
from hpcsched.daemon.lifecycle import acquire_lock
from hpcsched.daemon.server import Server
from hpcsched.errors import HpcschedError
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.runner import Runner, SlurmCommandError, run_slurm

from .audit import AuditLog
from .coordinator import GROW_STALL_S, Coordinator
from .service import OPS, SiteService

log = logging.getLogger("hpcsched.site")
OPERATOR_LEVELS = ("operator", "administrator")
ADMIN_CACHE_S = 300.0


@dataclass(frozen=True)
class SiteOptions:
    state_dir: str
    socket_path: str
    decisions_dir: str
    interval: float = 10.0
    operators: tuple[str, ...] = ()
    grow_stall: float = GROW_STALL_S

    @property
    def audit_path(self) -> str:
        return os.path.join(self.state_dir, "audit.jsonl")

    @property
    def state_path(self) -> str:
        return os.path.join(self.state_dir, "state.json")


def shared_directory(path: str) -> str:
    """Create ``path`` (mode 0755) or check it: a real directory of ours that only we may write,
    which every user may read (the socket's and the decisions' directories)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    statedir.refuse_link(path)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        raise statedir.UnsafePath(f"{statedir.describe(path, st)} belongs to another user, not to the service account")
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise statedir.UnsafePath(f"{statedir.describe(path, st)} may be written by others: `chmod 755 {path}`")
    os.chmod(path, 0o755)
    return path


def bind_public_socket(path: str) -> socket.socket:
    shared_directory(os.path.dirname(path))
    statedir.check_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)  # anyone may connect; SO_PEERCRED says who
    sock.listen(128)
    return sock


class OperatorCheck:
    """Who is an operator: the site's list, else Slurm's AdminLevel (cached)."""

    def __init__(self, names: Iterable[str], runner: Runner = run_slurm,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.names = frozenset(names)
        self.runner = runner
        self.clock = clock
        self.cache: dict[int, tuple[float, bool]] = {}

    def __call__(self, uid: int) -> bool:
        name = statedir.owner_name(uid)
        if uid == os.getuid() or name in self.names:
            return True
        hit = self.cache.get(uid)
        if hit is not None and self.clock() - hit[0] < ADMIN_CACHE_S:
            return hit[1]
        answer = slurm_operator(name, self.runner)
        self.cache[uid] = (self.clock(), answer)
        return answer


def slurm_operator(name: str, runner: Runner = run_slurm) -> bool:
    """Whether Slurm gives user ``name`` the AdminLevel Operator or Administrator."""
    try:
        out = runner(["sacctmgr", "-n", "-P", "show", "user", name, "format=adminlevel"]).stdout
    except SlurmCommandError:
        return False
    return out.strip().lower() in OPERATOR_LEVELS


def run_coordinator(options: SiteOptions) -> None:
    if os.getuid() == 0:
        raise HpcschedError("the coordinator never runs as root: run it under its service account "
                            "(docs/site.md: `sacctmgr add user NAME ... AdminLevel=Operator`)")
    statedir.private_directory(options.state_dir)
    lock = acquire_lock(os.path.join(options.state_dir, "coordinator.lock"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shared_directory(options.decisions_dir)
    coordinator = Coordinator(SlurmClient(only_own_jobs=False), AuditLog(options.audit_path), options.state_path,
                              options.decisions_dir, grow_stall_s=options.grow_stall)
    service = SiteService(coordinator, options.interval, time.time)
    server = Server(bind_public_socket(options.socket_path), service, allowed=lambda uid: True,
                    is_operator=OperatorCheck(options.operators), ops=OPS)
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        server.wake()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    log.info("coordinator started, pid %d, state %s, socket %s, decisions %s, every %g s",
             os.getpid(), options.state_dir, options.socket_path, options.decisions_dir, options.interval)
    loop = threading.Thread(target=coordinator.loop, args=(stop, options.interval), name="coordinator", daemon=True)
    loop.start()
    try:
        server.serve(stop)
    finally:
        stop.set()
        loop.join(timeout=30)
        server.close(options.socket_path)
        log.info("coordinator stopped")
        lock.close()
