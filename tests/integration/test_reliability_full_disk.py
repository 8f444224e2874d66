"""A full disk or an exceeded quota where hpcsched writes on the login node: the shared jobs
directory, or the daemon's state directory. ``hpcsched run`` must say which directory and why,
record nothing (no job, no claimed id), and work as before once there is room again."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import UserSession, copy_example


@pytest.fixture
def tiny_mounts(session: UserSession) -> Iterator[list[Path]]:
    """Small file systems mounted by a test (tmpfs of a few hundred KiB), unmounted after it,
    once the session's daemon is stopped (its socket may lie on one of them)."""
    mounted: list[Path] = []
    yield mounted
    session.hs("daemon", "stop", check=False, timeout=60)
    for point in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, timeout=30)


def mount_tiny(point: Path, user: str, mounted: list[Path], size: str = "512k") -> None:
    point.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"cannot mount a small tmpfs at {point}: {done.stderr}"
    mounted.append(point)
    pw = pwd.getpwnam(user)
    os.chown(point, pw.pw_uid, pw.pw_gid)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; the filler is returned for removal."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        (directory / "probe").write_bytes(b"\0" * 8192)
    (directory / "probe").unlink(missing_ok=True)
    return filler


def jobs(session: UserSession) -> list[dict[str, object]]:
    return list(json.loads(session.hs("status", "--json").stdout))


def claimed_ids(jobs_dir: Path) -> list[str]:
    owners = jobs_dir / ".owners"
    return sorted(os.listdir(owners)) if owners.is_dir() else []


def assert_run_refused_recording_nothing(session: UserSession, *said: str) -> None:
    """``hpcsched run`` fails saying each of ``said`` (not an internal error), and no job is
    recorded nor any id claimed in the jobs directory."""
    refused = session.hs("run", "allreduce.py", "--nodes", "1", check=False)
    assert refused.returncode != 0
    assert all(text in refused.stderr for text in said) and "internal error" not in refused.stderr, refused.stderr
    assert jobs(session) == [] and claimed_ids(Path(session.env["HPCSCHED_JOBS_DIR"])) == []


def run_once_there_is_room(session: UserSession, filler: Path) -> None:
    filler.unlink()
    job = session.run_job("allreduce.py", "--nodes", "1", "--procs-per-node", "1", "--time", "5")
    assert job == 1, f"the refused submission used up a job id: the next job got id {job}"
    session.hs("cancel", str(job), check=False)


def test_a_full_jobs_directory_refuses_the_run_naming_it_and_records_nothing(
        session: UserSession, tiny_mounts: list[Path]) -> None:
    jobs_dir = Path(session.env["HPCSCHED_JOBS_DIR"])
    mount_tiny(jobs_dir, session.user, tiny_mounts)
    copy_example(session, "allreduce.py")
    filler = fill(jobs_dir)
    assert_run_refused_recording_nothing(session, f"cannot claim a job id in the jobs directory {jobs_dir}",
                                         "No space left on device")
    run_once_there_is_room(session, filler)


def test_a_full_state_directory_refuses_the_run_naming_the_store_and_records_nothing(
        session: UserSession, tiny_mounts: list[Path]) -> None:
    state_dir = session.root / "small-state"
    mount_tiny(state_dir, session.user, tiny_mounts)
    session.env["HPCSCHED_STATE_DIR"] = str(state_dir)
    copy_example(session, "allreduce.py")
    session.hs("daemon", "start")
    filler = fill(state_dir)
    assert_run_refused_recording_nothing(session, f"the daemon's store {state_dir}/store-", "database or disk is full")
    run_once_there_is_room(session, filler)


def test_a_daemon_that_cannot_start_in_a_full_state_directory_says_it_is_full(
        session: UserSession, tiny_mounts: list[Path]) -> None:
    state_dir = session.root / "full-state"
    mount_tiny(state_dir, session.user, tiny_mounts)
    session.env["HPCSCHED_STATE_DIR"] = str(state_dir)
    filler = fill(state_dir)
    refused = session.hs("status", check=False)
    assert refused.returncode != 0
    assert f"its state directory {state_dir} is full" in refused.stderr, refused.stderr
    filler.unlink()
    assert session.hs("status", "--json").stdout.strip() == "[]"
