"""Where hpcsched keeps its files, and its tunables, read once from the environment.

- ``HPCSCHED_STATE_DIR``: the daemon's store, lock, socket and log. Must be on local disk
  (SQLite on a network file system is not safe). Default ``~/.local/state/hpcsched``.
- ``HPCSCHED_JOBS_DIR``: batch scripts and per-attempt logs. Must be visible from the compute
  nodes (a shared file system on a real cluster). Default ``~/.local/share/hpcsched/jobs``.
- ``HPCSCHED_POLL_INTERVAL``: seconds between monitor cycles (default 5).
- ``HPCSCHED_ADMISSION``: ``0`` turns off the admission pass, in which the daemon shrinks elastic
  jobs to make room for one of its jobs that waits in the queue for nodes (default on).
- ``HPCSCHED_IMAGE``: default training image.
- ``HPCSCHED_LAUNCHER_PYTHON``: the Python that runs the per-node launcher on compute nodes
  (default: the interpreter running hpcsched, which must be reachable there too).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from hpcsched.planning.request import DEFAULT_IMAGE

# The longest `hpcsched rebalance --wait` for a running pass to finish (the cron entry waits 60 s).
MAX_REBALANCE_WAIT_S = 600.0


@dataclass(frozen=True)
class Settings:
    state_dir: str
    jobs_dir: str
    poll_interval: float
    image: str
    launcher_python: str
    admission: bool = True

    @property
    def socket_path(self) -> str:
        return os.path.join(self.state_dir, "daemon.sock")

    @property
    def store_path(self) -> str:
        return os.path.join(self.state_dir, "store.sqlite")

    @property
    def lock_path(self) -> str:
        return os.path.join(self.state_dir, "daemon.lock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.state_dir, "daemon.log")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = env.get("HOME") or os.path.expanduser("~")
        return cls(
            state_dir=env.get("HPCSCHED_STATE_DIR") or os.path.join(home, ".local", "state", "hpcsched"),
            jobs_dir=env.get("HPCSCHED_JOBS_DIR") or os.path.join(home, ".local", "share", "hpcsched", "jobs"),
            poll_interval=float(env.get("HPCSCHED_POLL_INTERVAL") or 5.0),
            image=env.get("HPCSCHED_IMAGE") or DEFAULT_IMAGE,
            launcher_python=env.get("HPCSCHED_LAUNCHER_PYTHON") or sys.executable,
            admission=(env.get("HPCSCHED_ADMISSION") or "1").strip() != "0",
        )
