"""Every setting hpcsched reads, in one table: its name, type, default, help, environment variable,
the command-line option that overrides it, and whether a user's own file may set it.

The layers (:mod:`hpcsched.settings.layers`) and ``hpcsched config show`` read this table; the
documentation (docs/configuration.md) lists the same rows.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from hpcsched.errors import ValidationError
from hpcsched.planning import fields
from hpcsched.planning.request import DEFAULT_IMAGE

Kind = Literal["text", "path", "seconds", "switch", "names"]
Value = str | float | bool | tuple[str, ...]
# The caller's HOME and user name, from which the path defaults are built.
Home = Mapping[str, str]
# A job that asks for no memory gets this much per CPU core: 1000M x 4 cores fits the local
# cluster's 4000M nodes; a site sets its own (docs/configuration.md).
DEFAULT_MEM_PER_CPU = "1000M"


@dataclass(frozen=True)
class Setting:
    name: str
    kind: Kind
    default: Callable[[Home], Value]
    help: str
    env: str
    option: str = ""
    user_file: bool = True  # False: the site pins it (only the site file and the environment set it)
    check: Callable[[str], object] | None = None  # of a non-empty text: raises ValidationError if bad


def _under_home(*parts: str) -> Callable[[Home], Value]:
    return lambda home: "/".join((home["HOME"].rstrip("/"), *parts))


def _constant(value: Value) -> Callable[[Home], Value]:
    return lambda _home: value


def short_hostname() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def _mem_per_cpu(text: str) -> object:
    if fields.parse_mem(text, "mem_per_cpu") == 0:
        raise ValidationError("mem_per_cpu", "must be at least 1M (for all of a node's memory, set memory to 0)")
    return text


def _slurm_word(field: str) -> Callable[[str], object]:
    return lambda text: fields.parse_slurm_word(field, text)


SETTINGS: tuple[Setting, ...] = (
    Setting("state_dir", "path", _under_home(".local", "state", "hpcsched"),
            "The daemon's store, lock, socket and log. Must be on a local disk (SQLite is not safe on a "
            "network file system).", "HPCSCHED_STATE_DIR"),
    Setting("jobs_dir", "path", _under_home(".local", "share", "hpcsched", "jobs"),
            "Batch scripts, per-attempt logs and checkpoints. Must be visible from the compute nodes "
            "(a shared file system).", "HPCSCHED_JOBS_DIR"),
    Setting("poll_interval", "seconds", _constant(5.0), "Seconds between the daemon's monitor cycles.",
            "HPCSCHED_POLL_INTERVAL"),
    Setting("image", "text", _constant(DEFAULT_IMAGE), "The container image jobs run in.", "HPCSCHED_IMAGE",
            option="--image", check=fields.parse_image),
    Setting("image_dir", "path", _constant(""),
            "The shared image directory that `hpcsched image push` writes and every compute node reads (on "
            "the shared file system; empty: none, each node must already have the image). The nodes get the variable "
            "from the job, else read the same files.", "HPCSCHED_IMAGE_DIR", option="--dir"),
    Setting("launcher_python", "path", _constant(sys.executable),
            "The Python that runs the per-node launcher on the compute nodes (default: the one running "
            "hpcsched, which must be reachable there too).", "HPCSCHED_LAUNCHER_PYTHON"),
    Setting("admission", "switch", _constant(True),
            "Whether the daemon shrinks your elastic jobs to make room for one of your jobs that waits "
            "for nodes.", "HPCSCHED_ADMISSION"),
    Setting("partition", "text", _constant(""), "Slurm partition for jobs (empty: Slurm's default).",
            "HPCSCHED_PARTITION", option="--partition", check=lambda text: fields.parse_partitions("partition", text)),
    Setting("account", "text", _constant(""), "Slurm account to charge (empty: your default account).",
            "HPCSCHED_ACCOUNT", option="--account", check=_slurm_word("account")),
    Setting("qos", "text", _constant(""), "Slurm quality of service (empty: the default).", "HPCSCHED_QOS",
            option="--qos", check=_slurm_word("qos")),
    Setting("time", "text", _constant(""), "Time limit of a job: M, H:M:S or D-H:M:S (empty: the partition's).",
            "HPCSCHED_TIME", option="--time", check=fields.parse_time),
    Setting("memory", "text", _constant(""), "Memory per node, e.g. 16G; 0: all of each node's memory (empty: "
            "mem_per_cpu per CPU).", "HPCSCHED_MEMORY", option="--mem", check=fields.parse_mem),
    Setting("mem_per_cpu", "text", _constant(DEFAULT_MEM_PER_CPU),
            "Memory per CPU core of a job that asks for no memory (--mem or memory), so that small jobs "
            "can share a node (empty: the partition's default, often all of each node's memory).",
            "HPCSCHED_MEM_PER_CPU", check=_mem_per_cpu),
    Setting("host", "text", lambda _home: short_hostname(),
            "This login node's name in the daemon's socket, lock, store and log names (default: the short "
            "host name); one daemon per user and login node.", "HPCSCHED_HOST", user_file=False,
            check=fields.parse_host),
    Setting("coordinator_socket", "path", _constant(""),
            "The site coordinator's socket; empty: personal mode (your daemon sizes your jobs itself).",
            "HPCSCHED_COORDINATOR_SOCKET", user_file=False),
    Setting("operators", "names", _constant(()),
            "User names the site declares operators of the site coordinator.", "HPCSCHED_OPERATORS",
            user_file=False),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
