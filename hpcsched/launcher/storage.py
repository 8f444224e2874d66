"""Where rootless Podman keeps images and containers on this node, and whether a container can
start there (reliability C3, E3): the storage must be on node-local disk (overlay on a network
file system fails or crawls, and SQLite-like locking there is unsafe) and have room to spare.

Pure except :func:`check_node_storage`, which reads the user's ``storage.conf``, the mount table
and the free space, and is what the per-node launcher calls before ``podman run``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import tomllib

# File systems that are not node-local (as /proc/self/mounts names them).
NETWORK_FS = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "fuse.beegfs", "ceph",
    "fuse.ceph", "glusterfs", "fuse.glusterfs", "panfs", "fuse.sshfs", "afs", "9p", "ocfs2", "gfs2",
})
MIN_FREE_BYTES = 1 << 30  # a container's writable layer, logs and a pulled layer need this much
# A directory template with ``{node}``: each node keeps its images and containers in its own root
# there instead of the user's storage.conf (emulated nodes on one host; a site never needs it).
NODE_STORAGE_ENV = "HPCSCHED_NODE_STORAGE"


@dataclass(frozen=True)
class StoragePaths:
    graphroot: str
    runroot: str


def storage_conf_path(env: Mapping[str, str], home: str) -> str:
    """The user's storage.conf, as containers-storage looks it up."""
    if env.get("CONTAINERS_STORAGE_CONF"):
        return env["CONTAINERS_STORAGE_CONF"]
    config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(config, "containers", "storage.conf")


def storage_paths(conf_text: str | None, env: Mapping[str, str], home: str, uid: int) -> StoragePaths:
    """graphroot and runroot from the user's storage.conf, else rootless Podman's defaults."""
    storage: Mapping[str, object] = {}
    if conf_text:
        try:
            section = tomllib.loads(conf_text).get("storage")
        except tomllib.TOMLDecodeError:
            section = None
        storage = section if isinstance(section, dict) else {}
    data = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    runtime = env.get("XDG_RUNTIME_DIR") or f"/tmp/containers-user-{uid}"
    graph, run = storage.get("graphroot"), storage.get("runroot")
    return StoragePaths(
        graphroot=graph if isinstance(graph, str) and graph else os.path.join(data, "containers", "storage"),
        runroot=run if isinstance(run, str) and run else os.path.join(runtime, "containers"),
    )


def node_storage_override(node: str, env: Mapping[str, str]) -> StoragePaths | None:
    """The node's own storage root from :data:`NODE_STORAGE_ENV`, or None when it is unset."""
    template = env.get(NODE_STORAGE_ENV, "")
    if not template:
        return None
    root = template.replace("{node}", node)
    return StoragePaths(graphroot=os.path.join(root, "graph"), runroot=os.path.join(root, "run"))


def podman_storage_args(paths: StoragePaths | None, image_store: str | None) -> list[str]:
    """Podman's global options for an overridden storage root (rootless Podman ignores
    CONTAINERS_STORAGE_CONF when the user has a storage.conf, so the paths go on the command line),
    with the shared read-only image store when there is one. Empty without an override: the
    user's storage.conf applies, and a site lists its image store there."""
    if paths is None:
        return []
    args = ["--root", paths.graphroot, "--runroot", paths.runroot]
    return args + (["--storage-opt", f"overlay.imagestore={image_store}"] if image_store else [])


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, file system type) of each line of /proc/self/mounts (octal escapes decoded)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1].encode().decode("unicode_escape") if "\\" in fields[1] else fields[1]
            out.append((point, fields[2]))
    return out


def file_system_of(path: str, mounts: list[tuple[str, str]]) -> tuple[str, str]:
    """The mount holding ``path``: the longest mount point that is ``path`` or a parent of it."""
    best = ("/", "unknown")
    for point, fstype in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/") or point == "/"
        if inside and len(point) >= len(best[0]):
            best = (point, fstype)
    return best


def storage_problem(node: str, paths: StoragePaths, mounts: list[tuple[str, str]],
                    free_bytes: Callable[[str], int], existing: Callable[[str], str]) -> str | None:
    """Why no container can start with this storage on ``node``, or None."""
    for what, path in (("graphroot", paths.graphroot), ("runroot", paths.runroot)):
        point, fstype = file_system_of(existing(path), mounts)
        if fstype in NETWORK_FS:
            return (f"container storage ({what} {path}) is on a network file system ({fstype} at {point}) on {node}; "
                    "rootless Podman needs node-local disk: set graphroot and runroot in "
                    "~/.config/containers/storage.conf to a local directory (docs/real-cluster.md)")
    free = free_bytes(existing(paths.graphroot))
    if free < MIN_FREE_BYTES:
        return (f"node-local storage full on {node}: container storage {paths.graphroot} has {free // (1 << 20)} MiB "
                f"free, at least {MIN_FREE_BYTES // (1 << 20)} MiB are needed to start a container; "
                "free some (podman system prune) or ask your admin")
    return None


def nearest_existing(path: str) -> str:
    """``path`` or its closest existing parent (the storage may not be created yet)."""
    while not os.path.exists(path) and path not in ("", "/"):
        path = os.path.dirname(path)
    return path or "/"


def free_space(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def node_storage_paths(node: str, env: Mapping[str, str]) -> StoragePaths:
    """Where Podman keeps this node's images and containers: the override, else the user's
    storage.conf, else rootless Podman's defaults."""
    override = node_storage_override(node, env)
    if override is not None:
        return override
    home = env.get("HOME") or os.path.expanduser("~")
    try:
        with open(storage_conf_path(env, home), encoding="utf-8") as f:
            conf: str | None = f.read()
    except OSError:
        conf = None
    return storage_paths(conf, env, home, os.getuid())


def check_node_storage(node: str, env: Mapping[str, str]) -> str | None:
    """The launcher's check before ``podman run`` (the effectful shell around :func:`storage_problem`)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = parse_mounts(f.read())
    except OSError:
        mounts = []
    return storage_problem(node, node_storage_paths(node, env), mounts, free_space, nearest_existing)
