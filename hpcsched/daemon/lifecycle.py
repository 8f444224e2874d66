"""Starting and running the daemon: one per user and state directory, guarded by a lock (A5)."""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import signal
import threading
from typing import IO

from hpcsched.config import Settings
from hpcsched.daemon import statedir
from hpcsched.daemon.monitor import Monitor
from hpcsched.daemon.server import Server, bind_socket
from hpcsched.daemon.service import JobService
from hpcsched.daemon.store import Store
from hpcsched.daemon.submission import Submitter
from hpcsched.errors import HpcschedError
from hpcsched.site.agent import SiteAgent
from hpcsched.slurm.backend import choose_backend
from hpcsched.slurm.client import SlurmClient

log = logging.getLogger("hpcsched.daemon")


class AlreadyRunning(HpcschedError):
    def __init__(self, pid: str) -> None:
        super().__init__(f"already running, pid {pid}")
        self.pid = pid


def acquire_lock(path: str) -> IO[str]:
    """Hold an exclusive lock for the daemon's lifetime; the file names the holder's pid. Opened
    without following a link and truncated only once locked, so a planted link is refused (G5)."""
    f = os.fdopen(statedir.open_private_file(path, os.O_RDWR), "r+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = f.read().strip() or "?"
        f.close()
        raise AlreadyRunning(pid) from None
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def adopt_legacy_store(state_dir: str, store_path: str) -> bool:
    """Before one daemon per login node, a state directory held ``store.sqlite`` (and
    ``daemon.lock``, ``daemon.sock``). The first daemon to start after the upgrade takes that
    store over as its own, renamed to ``store_path``, once no earlier daemon holds its lock.
    Returns whether it did."""
    legacy = os.path.join(state_dir, "store.sqlite")
    if os.path.lexists(store_path) or not os.path.lexists(legacy):
        return False
    try:
        old_lock = acquire_lock(os.path.join(state_dir, "daemon.lock"))
    except AlreadyRunning as e:
        raise HpcschedError(f"a daemon of an earlier hpcsched version still runs from {state_dir} (pid {e.pid}): "
                            f"stop it (kill {e.pid}), then start again; this daemon takes its jobs over") from None
    with old_lock:
        if os.path.lexists(store_path) or not os.path.lexists(legacy):
            return False  # another login node's daemon took it first
        for suffix in ("-wal", "-shm", ""):  # the database last: until it moves, a restart finishes the move
            statedir.refuse_link(legacy + suffix)
            if os.path.lexists(legacy + suffix):
                os.rename(legacy + suffix, store_path + suffix)
        statedir.check_socket_path(os.path.join(state_dir, "daemon.sock"))
    return True


def run_daemon(settings: Settings) -> None:
    statedir.private_directory(settings.state_dir)
    lock = acquire_lock(settings.lock_path)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    warning = statedir.local_disk_warning(settings.state_dir)
    if warning:
        log.warning("%s", warning)
    if adopt_legacy_store(settings.state_dir, settings.store_path):
        log.info("took over the store of an earlier version as %s", settings.store_path)
    stop = threading.Event()
    store = Store(settings.store_path, settings.host)
    client, backend = choose_backend(SlurmClient(), os.environ.get("HPCSCHED_SLURM_BACKEND", "cli"))
    submitter = Submitter(store, client, settings)
    monitor = Monitor(store, client, submitter, settings.poll_interval)
    service = JobService(store, client, submitter, monitor, stop, backend=backend, state_dir=settings.state_dir)
    coordinator = settings.coordinator_socket
    if coordinator:  # site mode: the coordinator decides sizes; this daemon is the user's agent
        agent = SiteAgent(coordinator, store, monitor.files, service.resizer, client)
        monitor.queue_source, monitor.after_cycle = agent.queue, agent.sync
        submitter.site_decisions = agent.site_decisions
        service.site = agent
    elif settings.admission:
        monitor.on_waiting = service.admission_pass
    owner = os.getuid()
    server = Server(bind_socket(settings.socket_path), service, allowed=lambda uid: uid == owner)
    def request_stop(*_: object) -> None:
        stop.set()
        monitor.wakeup.set()
        server.wake()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    log.info("daemon started on %s, pid %d, user %s, store %s (id %s), backend: %s", settings.host,
             os.getpid(), pwd.getpwuid(owner).pw_name, settings.store_path, store.store_id, backend)
    poller = threading.Thread(target=monitor.run, args=(stop,), name="monitor", daemon=True)
    poller.start()
    try:
        server.serve(stop)
    finally:
        stop.set()
        monitor.wakeup.set()
        poller.join(timeout=10)
        server.close(settings.socket_path)
        store.close()
        log.info("daemon stopped")
        lock.close()
