"""The daemon's private directory: nothing in it is written through a link another user planted (G5).

The state directory holds the daemon's lock, log, store and socket. It must be a real directory
(not a symbolic link) owned by the user, which nobody else may write to; a missing one is created
with mode 0700, and one of ours that others may only read or enter is tightened to 0700. Files in
it are opened with ``O_NOFOLLOW`` and never truncated before we know they are ours.
"""

from __future__ import annotations

import os
import pwd
import stat

from hpcsched.errors import HpcschedError
from hpcsched.launcher import storage


class UnsafePath(HpcschedError):
    """A path in the state directory that hpcsched refuses to use; the message says why and what to do."""


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe(path: str, st: os.stat_result) -> str:
    return f"{path} (owner {owner_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o})"


def refuse_link(path: str) -> None:
    """Raise if ``path`` is a symbolic link; a missing path is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{path} is a symbolic link (to {os.readlink(path)}, owner {owner_name(st.st_uid)}); "
                         "hpcsched never writes through a link: remove it")


def private_directory(path: str) -> str:
    """Create ``path`` (mode 0700) or check it: a real directory of ours that only we may write.
    Returns the path. Raises ``UnsafePath`` naming the path, its owner and mode otherwise."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    refuse_link(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise UnsafePath(f"state directory {describe(path, st)} belongs to another user, not to "
                             f"{owner_name(os.getuid())}: set HPCSCHED_STATE_DIR to a directory of your own")
        if stat.S_IMODE(st.st_mode) & 0o022:
            raise UnsafePath(f"state directory {describe(path, st)} may be written by other users, who could "
                             f"have placed files in it: check its contents, then `chmod 700 {path}`")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def open_private_file(path: str, flags: int) -> int:
    """Open (creating with mode 0600) a regular file of ours, never following a link; returns the fd.
    ``flags`` must not truncate: check first, then truncate the open file if needed."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        refuse_link(path)  # ELOOP: say which link, and to where
        raise UnsafePath(f"cannot open {path}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise UnsafePath(f"{describe(path, st)} is not a regular file of yours: hpcsched will not use it; remove it")
    return fd


def check_socket_path(path: str) -> None:
    """Remove a stale socket of ours at ``path``; refuse anything else found there (a link, a file,
    another user's socket). The caller holds the daemon lock, so no live daemon owns the socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    refuse_link(path)
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        raise UnsafePath(f"{describe(path, st)} is not a socket of yours: hpcsched will not replace it; remove it")
    os.unlink(path)


def network_fs_warning(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """Why the state directory at ``path`` should move (it is on a network file system), or None.
    ``mounts``: (mount point, type) as :func:`hpcsched.launcher.storage.parse_mounts` reads them."""
    point, fstype = storage.file_system_of(os.path.realpath(path), mounts)
    if fstype not in storage.NETWORK_FS:
        return None
    return (f"the state directory {path} is on a {fstype} file system (mounted at {point}), not a local disk: "
            "SQLite's locking is not safe there; set state_dir (HPCSCHED_STATE_DIR) to a directory of yours "
            "on a local disk of this login node, e.g. /var/tmp/$USER/hpcsched")


def local_disk_warning(path: str) -> str | None:
    """:func:`network_fs_warning` for this machine's mount table (None where it cannot be read)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            mounts = storage.parse_mounts(f.read())
    except OSError:
        return None
    return network_fs_warning(path, mounts)
