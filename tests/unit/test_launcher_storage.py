"""The per-node launcher's check of Podman's storage before a container starts (C3, E3)."""

from __future__ import annotations

import pytest

from hpcsched.launcher.storage import (
    MIN_FREE_BYTES,
    StoragePaths,
    file_system_of,
    parse_mounts,
    storage_conf_path,
    storage_paths,
    storage_problem,
)

MOUNTS = parse_mounts(
    "/dev/vda1 / ext4 rw,relatime 0 0\n"
    "tmpfs /tmp tmpfs rw 0 0\n"
    "fs1:/export/home /home nfs4 rw,vers=4.2 0 0\n"
    "/dev/nvme0n1 /local\\040scratch xfs rw 0 0\n"
)
PLENTY = 50 * MIN_FREE_BYTES


def problem(paths: StoragePaths, free: int = PLENTY) -> str | None:
    return storage_problem("node7", paths, MOUNTS, lambda path: free, lambda path: path)


def test_the_users_storage_conf_names_the_roots_else_rootless_defaults_apply() -> None:
    conf = '[storage]\ndriver = "overlay"\ngraphroot = "/local scratch/alice/g"\nrunroot = "/tmp/run-1000"\n'
    assert storage_paths(conf, {}, "/home/alice", 1000) == StoragePaths("/local scratch/alice/g", "/tmp/run-1000")
    assert storage_paths(None, {}, "/home/alice", 1000) == StoragePaths(
        "/home/alice/.local/share/containers/storage", "/tmp/containers-user-1000/containers")
    assert storage_paths("not toml [", {"XDG_DATA_HOME": "/d", "XDG_RUNTIME_DIR": "/run/user/9"}, "/h", 9) == \
        StoragePaths("/d/containers/storage", "/run/user/9/containers")
    assert storage_conf_path({"CONTAINERS_STORAGE_CONF": "/etc/x.conf"}, "/h") == "/etc/x.conf"
    assert storage_conf_path({}, "/home/alice") == "/home/alice/.config/containers/storage.conf"


def test_the_mount_holding_a_path_is_the_longest_matching_mount_point() -> None:
    assert file_system_of("/home/alice/.local/share/containers", MOUNTS) == ("/home", "nfs4")
    assert file_system_of("/homework", MOUNTS) == ("/", "ext4")
    assert file_system_of("/local scratch/alice", MOUNTS) == ("/local scratch", "xfs")


def test_E3_storage_on_a_network_file_system_is_refused_naming_it_and_the_remedy() -> None:
    why = problem(StoragePaths("/home/alice/.local/share/containers/storage", "/tmp/run"))
    assert why is not None and "network file system (nfs4 at /home) on node7" in why
    assert "storage.conf" in why and "graphroot" in why


def test_C3_full_node_local_storage_is_reported_with_the_node_and_what_is_free() -> None:
    why = problem(StoragePaths("/local scratch/alice/g", "/tmp/run"), free=300 << 20)
    assert why is not None and why.startswith("node-local storage full on node7: ")
    assert "300 MiB free" in why and "/local scratch/alice/g" in why


@pytest.mark.parametrize("graphroot", ["/local scratch/alice/g", "/var/lib/containers"])
def test_local_storage_with_room_is_fine(graphroot: str) -> None:
    assert problem(StoragePaths(graphroot, "/tmp/run")) is None
