"""Where hpcsched keeps its files, and its tunables: :class:`Settings`, read once per process from
the layers of :mod:`hpcsched.settings` (built-in defaults < ``/etc/hpcsched/config.toml`` < the
user's ``~/.config/hpcsched/config.toml`` < ``HPCSCHED_*`` environment variables).

docs/configuration.md lists every setting; ``hpcsched config show`` prints the effective values.
The paths the daemon derives from ``state_dir`` (socket, store, lock, log) are properties here.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcsched import settings as layers
from hpcsched.settings.schema import short_hostname

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
    partition: str = ""
    account: str = ""
    qos: str = ""
    time: str = ""
    memory: str = ""
    mem_per_cpu: str = ""
    coordinator_socket: str = ""
    operators: tuple[str, ...] = ()
    image_dir: str = ""
    # Several login nodes may share one home, and so one state directory: each login node's
    # daemon has its own socket, lock, store and log, named after the host.
    host: str = field(default_factory=short_hostname)

    @property
    def socket_path(self) -> str:
        return os.path.join(self.state_dir, f"daemon-{self.host}.sock")

    @property
    def store_path(self) -> str:
        return os.path.join(self.state_dir, f"store-{self.host}.sqlite")

    @property
    def lock_path(self) -> str:
        return os.path.join(self.state_dir, f"daemon-{self.host}.lock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.state_dir, f"daemon-{self.host}.log")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of a process with environment ``env`` (default: this one's), with the site
        and user files it names. Raises :class:`~hpcsched.errors.ValidationError` naming the file
        and key, or the variable, of a bad value."""
        return cls.load(env)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, options: Mapping[str, object] | None = None) -> Settings:
        """:meth:`from_env` with the command line's ``options`` (by setting name) on top."""
        values = layers.effective(caller_environment(env), options)
        return cls(**{name: e.value for name, e in values.items()})  # type: ignore[arg-type]


def caller_environment(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """``env`` (default: this process's) with HOME and USER filled in from the account when unset
    (the path defaults and a site file's ``$USER`` need them)."""
    env = os.environ if env is None else env
    if env.get("HOME") and env.get("USER"):
        return env
    account = pwd.getpwuid(os.getuid())
    return {**env, "HOME": env.get("HOME") or account.pw_dir, "USER": env.get("USER") or account.pw_name}
