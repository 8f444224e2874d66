"""The state directory cannot be hijacked: links planted in it are refused and their targets left
untouched, and a directory another user owns or may write is refused with a message saying why (G5)."""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path

import pytest

from hpcsched.config import Settings
from hpcsched.daemon import client, statedir
from hpcsched.daemon.lifecycle import acquire_lock
from hpcsched.daemon.server import bind_socket
from hpcsched.daemon.statedir import UnsafePath
from hpcsched.daemon.store import Store


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of the user that a planted link points at."""
    path = tmp_path / "victim.txt"
    path.write_text("precious data\n")
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return Path(statedir.private_directory(str(tmp_path / "state")))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_G5_planted_lock_link_leaves_the_victim_untouched_and_is_refused(state: Path, victim: Path) -> None:
    (state / "daemon.lock").symlink_to(victim)
    with pytest.raises(UnsafePath, match=re.escape(f"{state / 'daemon.lock'} is a symbolic link")):
        acquire_lock(str(state / "daemon.lock"))
    assert victim.read_text() == "precious data\n"


@pytest.mark.parametrize("name", ["daemon-login1.lock", "daemon-login1.log", "store-login1.sqlite", "daemon-login1.sock"])
def test_G5_starting_the_daemon_refuses_a_planted_link_before_anything_runs(state: Path, victim: Path,
                                                                          name: str) -> None:
    (state / name).symlink_to(victim)
    settings = Settings.from_env({"HPCSCHED_STATE_DIR": str(state), "HOME": str(state), "HPCSCHED_HOST": "login1"})
    with pytest.raises(UnsafePath, match=re.escape(f"{state / name} is a symbolic link")):
        client.start_daemon(settings)
    assert victim.read_text() == "precious data\n"
    assert [p.name for p in state.iterdir()] == [name]  # no daemon started, no log written


def test_lock_names_the_holder_and_holds_only_our_pid(state: Path) -> None:
    (state / "daemon.lock").write_text("a much longer text than any pid")
    held = acquire_lock(str(state / "daemon.lock"))
    try:
        assert (state / "daemon.lock").read_text() == str(os.getpid())
    finally:
        held.close()


def test_missing_state_directory_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "state"
    statedir.private_directory(str(path))
    assert path.is_dir() and mode(path) == 0o700


def test_own_directory_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    statedir.private_directory(str(path))
    assert mode(path) == 0o700


@pytest.mark.parametrize("bits", [0o770, 0o702, 0o1777])
def test_directory_others_may_write_is_refused_with_its_mode(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(bits)
    with pytest.raises(UnsafePath, match=f"mode {bits:04o}.*chmod 700"):
        statedir.private_directory(str(path))
    assert mode(path) == bits


def test_directory_of_another_user_is_refused_naming_its_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    owner = os.lstat(path).st_uid
    monkeypatch.setattr(statedir.os, "getuid", lambda: owner + 1)
    with pytest.raises(UnsafePath, match=f"owner {statedir.owner_name(owner)}.*belongs to another user"):
        statedir.private_directory(str(path))


def test_state_directory_that_is_a_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(target)
    with pytest.raises(UnsafePath, match="state is a symbolic link"):
        statedir.private_directory(str(tmp_path / "state"))


def test_file_of_another_user_in_the_directory_is_refused(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (state / "daemon.log").write_text("")
    owner = os.lstat(state / "daemon.log").st_uid
    monkeypatch.setattr(statedir.os, "getuid", lambda: owner + 1)
    with pytest.raises(UnsafePath, match="not a regular file of yours"):
        statedir.open_private_file(str(state / "daemon.log"), os.O_WRONLY | os.O_APPEND)


def test_stale_socket_of_ours_is_replaced(state: Path) -> None:
    path = str(state / "daemon.sock")
    bind_socket(path).close()
    sock = bind_socket(path)
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode) and mode(Path(path)) == 0o600
    finally:
        sock.close()


def test_G5_link_or_file_at_the_socket_path_is_refused(state: Path, victim: Path) -> None:
    (state / "daemon.sock").symlink_to(victim)
    with pytest.raises(UnsafePath, match="is a symbolic link"):
        bind_socket(str(state / "daemon.sock"))
    (state / "daemon.sock").unlink()
    (state / "daemon.sock").write_text("not a socket")
    with pytest.raises(UnsafePath, match="not a socket of yours"):
        bind_socket(str(state / "daemon.sock"))
    assert victim.read_text() == "precious data\n"
    assert (state / "daemon.sock").read_text() == "not a socket"


def test_G5_store_path_that_is_a_link_is_refused(state: Path, victim: Path) -> None:
    (state / "store.sqlite").symlink_to(victim)
    with pytest.raises(UnsafePath, match=r"store\.sqlite is a symbolic link"):
        Store(str(state / "store.sqlite"))
    assert victim.read_text() == "precious data\n"


def test_socket_bound_in_a_private_directory_accepts_its_owner(state: Path) -> None:
    sock = bind_socket(str(state / "daemon.sock"))
    try:
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peer.connect(str(state / "daemon.sock"))
        peer.close()
        assert mode(state) == 0o700
    finally:
        sock.close()
