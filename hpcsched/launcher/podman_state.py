"""Podman's own state on a compute node after a job was killed hard (Slurm's cgroup kill at a
time limit, the OOM killer): the container, its conmon and Podman's pause process are gone, but
Podman's state still names the container as running, and every podman command of the user's
fails ("invalid internal status ... podman system migrate") until it is reset. The launcher
checks for that state before it starts a container (reliability E6b, docs/reliability.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from hpcsched.images.node import Lock, NodeImages, node_lock
from hpcsched.launcher.container import JOB_LABEL


def recover_stale_state(where: NodeImages, say: Callable[[str], None], lock: Lock = node_lock) -> str | None:
    """Reset Podman's state on this node when it names containers whose processes are gone (see
    :meth:`Podman.stale`); why no container can start here if that fails, else None. No container of
    the user's runs in that state (Podman would have joined its namespace), so the reset loses
    nothing; it is done under the node lock, so a second launcher of the user's starting beside
    this one cannot reset a container this one has just started."""
    if not where.podman.stale():
        return None
    with lock(where.lock_path):
        if not where.podman.stale():
            return None
        say("Podman's state here names containers whose processes are gone (a job killed with its conmon and "
            "Podman's pause process); resetting it with `podman system migrate`")
        began = int(time.time())
        # Its exit status says little: it fails when it cannot stop a container whose processes
        # are gone, which is every container in this state, and resets the state all the same.
        result = where.podman.try_("system", "migrate")
        if not where.podman.stale():
            remove_killed_containers(where, began, say)
            return None
    last = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
    return (f"Podman on {where.node} refuses every command (its state names containers whose processes are gone) "
            f"and `podman system migrate` did not repair it: {last}; ask your admin to look at this node")


KILLED_STATES = frozenset({"exited", "stopped", "stopping", "unknown"})


def killed_containers(listing: str, before: int) -> list[str]:
    """The ids, in ``podman ps --all --format json`` output, of the containers created before
    ``before`` (Unix seconds) that are not running: after a reset (no container of the user's
    had a live process then) these are the containers of killed jobs. "stopping" is what a reset
    often leaves them in, and ``podman container prune`` passes them over."""
    try:
        listed = json.loads(listing or "[]")
    except ValueError:
        return []
    return [str(c["Id"]) for c in listed if isinstance(c, dict) and c.get("Id")
            and str(c.get("State", "")).lower() in KILLED_STATES
            and isinstance(c.get("Created"), int | float) and c["Created"] < before]


def remove_killed_containers(where: NodeImages, before: int, say: Callable[[str], None]) -> None:
    """After a reset: remove the hpcsched containers of killed jobs (:func:`killed_containers`),
    which nothing else removes. Containers merely created, and any created since, are left
    alone: another launcher of the user's may be starting one."""
    listing = where.podman.try_("ps", "--all", "--filter", f"label={JOB_LABEL}", "--format", "json")
    dead = killed_containers(listing.stdout, before) if listing.returncode == 0 else []
    if dead and where.podman.try_("rm", "--force", "--time", "0", *dead).returncode == 0:
        say(f"removed {len(dead)} stopped container(s) of killed hpcsched jobs")
