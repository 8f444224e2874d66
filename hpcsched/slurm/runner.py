"""Runs Slurm commands. Nothing else in hpcsched starts a Slurm process.

No shell is ever involved: argv goes straight to exec. Every failure — a missing binary, a
timeout, a non-zero exit — becomes one typed :class:`SlurmCommandError` that carries the argv,
exit code, stdout and stderr.

Every command runs in an explicit environment (:func:`slurm_environment`), never the caller's:
``sbatch`` passes its whole environment to the job, and Slurm's commands read ``SBATCH_*``,
``SLURM_*``, ``SQUEUE_*``... variables as options that would override the ones hpcsched gives.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from hpcsched.errors import HpcschedError

DEFAULT_TIMEOUT = 30.0
SLURM_COMMANDS = frozenset({"sbatch", "squeue", "sacct", "scontrol", "sinfo", "scancel", "sacctmgr", "srun", "sshare"})
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
# Taken over from the caller when set: the time zone, the cluster's configuration file, and the
# site's GPU device style, CDI directories, shared image directory and node storage root, which
# the launcher reads on the compute nodes (docs/real-cluster.md).
PASSED_VARIABLES = ("TZ", "SLURM_CONF", "HPCSCHED_GPU_DEVICE_STYLE", "HPCSCHED_CDI_SPEC_DIRS", "HPCSCHED_IMAGE_DIR",
                    "HPCSCHED_NODE_STORAGE")
# What the explicit environment leaves out although a user may have set it on purpose.
_OVERRIDING_PREFIXES = ("SBATCH_", "SLURM_", "SRUN_", "SALLOC_", "SQUEUE_", "SACCT_", "SINFO_", "SCONTROL_")


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


def slurm_environment(caller: Mapping[str, str], home: str, user: str, slurm_bin: str | None) -> dict[str, str]:
    """The whole environment of a Slurm command, and so of every job (``sbatch --export=ALL``):
    a system PATH (with the directory that holds Slurm's commands), HOME and USER of the account,
    a UTF-8 C locale, and :data:`PASSED_VARIABLES` when ``caller`` sets them. Nothing else."""
    path = list(SYSTEM_PATH)
    if slurm_bin and slurm_bin not in path:
        path.insert(0, slurm_bin)
    env = {"PATH": ":".join(path), "HOME": home, "USER": user, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    env.update({name: caller[name] for name in PASSED_VARIABLES if caller.get(name)})
    return env


def ignored_variables(caller: Mapping[str, str]) -> list[str]:
    """Variables of ``caller`` that would change a Slurm command or the job, and that the explicit
    environment therefore leaves out (what ``hpcsched run`` warns about)."""
    return sorted(name for name in caller if name not in PASSED_VARIABLES
                  and (name.startswith(_OVERRIDING_PREFIXES) or name in ("BASH_ENV", "ENV")))


def current_environment() -> dict[str, str]:
    """:func:`slurm_environment` for this process's account; Slurm's commands are looked up on
    this process's PATH, the one thing taken from it."""
    account = pwd.getpwuid(os.getuid())
    sbatch = shutil.which("sbatch")
    return slurm_environment(os.environ, account.pw_dir, account.pw_name, os.path.dirname(sbatch) if sbatch else None)


def run_slurm(argv: Sequence[str], *, stdin: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
    """Run one Slurm command and return its output, or raise :class:`SlurmCommandError`."""
    if not argv or argv[0] not in SLURM_COMMANDS:
        raise ValueError(f"not a Slurm command: {argv[:1]}")
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=None if stdin is not None else subprocess.DEVNULL, env=current_environment(),
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
