"""Runs Slurm commands. Nothing else in hpcsched starts a Slurm process.

No shell is ever involved: argv goes straight to exec. Every failure — a missing binary, a
timeout, a non-zero exit — becomes one typed :class:`SlurmCommandError` that carries the argv,
exit code, stdout and stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from hpcsched.errors import HpcschedError

DEFAULT_TIMEOUT = 30.0
SLURM_COMMANDS = frozenset({"sbatch", "squeue", "sacct", "scontrol", "sinfo", "scancel", "sacctmgr", "srun"})


class SlurmCommandError(HpcschedError):
    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str, why: str = "") -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = why or (stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {returncode}")
        super().__init__(f"{argv[0]} failed: {detail}")

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    stdout: str
    stderr: str


def run_slurm(argv: Sequence[str], *, stdin: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
    """Run one Slurm command and return its output, or raise :class:`SlurmCommandError`."""
    if not argv or argv[0] not in SLURM_COMMANDS:
        raise ValueError(f"not a Slurm command: {argv[:1]}")
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise SlurmCommandError(argv, 127, "", "", why=f"{argv[0]} not found on PATH (is Slurm installed?)") from None
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise SlurmCommandError(argv, None, out, err, why=f"no answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise SlurmCommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return CommandResult(tuple(argv), proc.stdout, proc.stderr)


def start_step(argv: Sequence[str], *, stdout: IO[bytes] | int | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a long-running ``srun`` job step whose output streams to ``stdout`` (the batch driver
    needs the process to forward signals to, so this one does not wait)."""
    if not argv or argv[0] != "srun":
        raise ValueError(f"not a job step: {argv[:1]}")
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT, env=env)


Runner = Callable[..., CommandResult]
