"""Checks of the user's files before anything is submitted (F4, F6, and symbolic links out of the
work directory). These read the file system,
so they run where the files are read as their user — the CLI, and again the personal daemon for
whatever arrives on its socket — never in the pure planner. :func:`check_job_files` is the one
entry point both call."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import islice

from hpcsched.errors import ValidationError

MAX_SCRIPT_BYTES = 16 * 1024 * 1024
# The work-directory walk stops after this many entries: a check at submission, not a scan of a
# data set. Links further down are not looked at.
MAX_TREE_ENTRIES = 10_000


def check_job_files(workdir: str, script: str) -> None:
    """Every file check of a job request: the work directory, then the script in it (the request
    itself already holds the script inside the work directory, as paths)."""
    check_workdir(workdir)
    check_script(script)


def check_script(path: str) -> None:
    """The script exists, is a regular readable file, and is valid Python."""
    field = "SCRIPT"
    if not os.path.lexists(path):
        raise ValidationError(field, f"{path}: no such file")
    if not os.path.isfile(path):
        raise ValidationError(field, f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            source = f.read(MAX_SCRIPT_BYTES + 1)
    except PermissionError:
        raise ValidationError(field, f"{path}: permission denied (the file is not readable by you)") from None
    except OSError as e:
        raise ValidationError(field, f"{path}: cannot be read ({e.strerror})") from None
    if len(source) > MAX_SCRIPT_BYTES:
        raise ValidationError(field, f"{path}: larger than {MAX_SCRIPT_BYTES // (1024 * 1024)} MiB; is it a script?")
    try:
        compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise ValidationError(field, f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except ValueError as e:
        raise ValidationError(field, f"{path}: cannot be compiled: {e}") from None


def check_workdir(path: str) -> None:
    field = "--workdir"
    if not os.path.isdir(path):
        raise ValidationError(field, f"{path}: not an existing directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ValidationError(field, f"{path}: permission denied")


def check_workdir_tree(workdir: str, script: str, skip: Sequence[str] = ()) -> None:
    """The container sees the work directory and nothing else: refuse a script, or a symbolic link
    in the work directory, that resolves outside it (it would fail inside the job). The walk never
    follows a link into a directory, leaves out ``skip`` (the jobs directory) and Python virtual
    environments (their links point at the host's interpreter by design; the job uses the image's),
    and stops after MAX_TREE_ENTRIES entries."""
    root = os.path.realpath(workdir)
    _refuse_outside("SCRIPT", script, root, workdir)
    skipped = {os.path.realpath(p) for p in skip}
    for link in _links_in(workdir, skipped):
        _refuse_outside("--workdir", link, root, workdir)


def _refuse_outside(field: str, path: str, root: str, workdir: str) -> None:
    resolved = os.path.realpath(path)
    if resolved == root or resolved.startswith(root.rstrip("/") + "/"):
        return
    shown = f"{path} is a symbolic link to {os.readlink(path)}" if os.path.islink(path) else f"{path} resolves to {resolved}"
    raise ValidationError(field, f"{shown}, outside the work directory {workdir}, which is all the container sees: "
                                 "copy the data into the work directory, or pass a --workdir that contains "
                                 f"{resolved}")


def _links_in(workdir: str, skipped: set[str]) -> Iterator[str]:
    """Symbolic links under ``workdir``, breadth first, within the entry budget."""
    pending, seen = deque([workdir]), 0
    while pending and seen < MAX_TREE_ENTRIES:
        directory = pending.popleft()
        try:
            with os.scandir(directory) as entries:
                listed = list(islice(entries, MAX_TREE_ENTRIES - seen))
        except OSError:
            continue  # unreadable here means unreadable in the container too; the job says so
        seen += len(listed)
        for entry in listed:
            if entry.is_symlink():
                yield entry.path
            elif entry.is_dir(follow_symlinks=False) and not _left_out(entry.path, skipped):
                pending.append(entry.path)


def _left_out(directory: str, skipped: set[str]) -> bool:
    return os.path.realpath(directory) in skipped or os.path.exists(os.path.join(directory, "pyvenv.cfg"))
