"""Checks of the user's files before anything is submitted (F4, F6). These read the file system,
so they run where the files are read as their user — the CLI, and again the personal daemon for
whatever arrives on its socket — never in the pure planner. :func:`check_job_files` is the one
entry point both call."""

from __future__ import annotations

import os

from hpcsched.errors import ValidationError

MAX_SCRIPT_BYTES = 16 * 1024 * 1024


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
