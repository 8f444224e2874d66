"""Job ids that stay unique across one user's daemons on several login nodes.

Each login node runs its own daemon with its own store; the jobs directory is shared (the compute
nodes see it too). Before a daemon records a job it claims the id with a file
``<jobs dir>/.owners/<id>`` created with ``O_EXCL`` (atomic on a local disk and on NFS v3 and
later), holding the claiming host and store. A daemon that meets a claimed id takes the next
one, so ``hpcsched status 12`` means one job, whichever login node it is typed on, and a daemon
asked about a job it does not have can say which login node's daemon has it.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass

from hpcsched.daemon import statedir
from hpcsched.errors import HpcschedError

OWNERS_DIR = ".owners"
MAX_CLAIM_TRIES = 100_000
RECENT_CLAIMS = 200  # how many of the latest ids `hpcsched status` looks at for other login nodes' jobs


@dataclass(frozen=True)
class Owner:
    host: str
    store_id: str


class JobsDirectoryError(HpcschedError):
    """No job id could be claimed in the jobs directory (no room, no permission); nothing was recorded."""


def owners_dir(jobs_root: str) -> str:
    return os.path.join(jobs_root, OWNERS_DIR)


def claim_job_id(jobs_root: str, first: int, owner: Owner) -> int:
    """The lowest id from ``first`` on that no daemon has claimed, now claimed for ``owner``.
    A claim that cannot be written whole (a full disk, an exceeded quota) is taken back and raises
    :class:`JobsDirectoryError` naming the directory and the reason."""
    directory = owners_dir(jobs_root)
    record = json.dumps({"host": owner.host, "store_id": owner.store_id}).encode()
    try:
        statedir.private_directory(directory)
        for job_id in range(first, first + MAX_CLAIM_TRIES):
            path = os.path.join(directory, str(job_id))
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(record)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:
                release_claim(jobs_root, job_id)
                raise
            return job_id
    except OSError as e:
        raise JobsDirectoryError(f"cannot claim a job id in the jobs directory {jobs_root}: {e.strerror or e}"
                                 f"{room_hint(e)}; nothing was recorded or submitted") from e
    raise statedir.UnsafePath(f"{directory} holds {MAX_CLAIM_TRIES} claimed job ids after {first}; remove "
                              "the files of jobs that no daemon keeps any more")


def release_claim(jobs_root: str, job_id: int) -> None:
    """Take back a claim whose job was never recorded (its record could not be written)."""
    try:
        os.unlink(os.path.join(owners_dir(jobs_root), str(job_id)))
    except FileNotFoundError:
        pass


def room_hint(error: OSError) -> str:
    """What to check when a write failed for want of room."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return " (the disk or your quota there is full: see `df -h` and `quota`, then free some space)"
    return ""


def owner_of(jobs_root: str, job_id: int) -> Owner | None:
    """Who claimed ``job_id`` (None: nobody, or a record that cannot be read)."""
    path = os.path.join(owners_dir(jobs_root), str(job_id))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(4096) or b"{}")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return Owner(str(data.get("host", "?")), str(data.get("store_id", "?")))


def recent_elsewhere(jobs_root: str, host: str, recent: int = RECENT_CLAIMS) -> dict[str, list[int]]:
    """Of the ``recent`` highest claimed ids, those claimed by daemons on other login nodes than
    ``host``, by host (what ``hpcsched status`` mentions below your jobs)."""
    try:
        names = os.listdir(owners_dir(jobs_root))
    except OSError:
        return {}
    elsewhere: dict[str, list[int]] = {}
    for job_id in sorted((int(n) for n in names if n.isdigit()), reverse=True)[:recent]:
        owner = owner_of(jobs_root, job_id)
        if owner is not None and owner.host != host:
            elsewhere.setdefault(owner.host, []).append(job_id)
    return {h: sorted(ids) for h, ids in sorted(elsewhere.items())}


def elsewhere_message(job_id: int, owner: Owner | None, here: Owner) -> str:
    """What a daemon says about a job it does not have."""
    if owner is None or owner.store_id == here.store_id:
        return f"no job {job_id}"
    if owner.host == here.host:
        return f"job {job_id} belongs to another store of yours on {owner.host} ({owner.store_id}), not to this daemon's"
    return f"job {job_id} belongs to your daemon on login node {owner.host}; run this command there (ssh {owner.host})"
