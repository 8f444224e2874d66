"""The one door to ``podman`` for image work: no shell, one typed error carrying argv, exit code
and output, and the global storage options of the node it runs on (:class:`Podman`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hpcsched.errors import HpcschedError

DEFAULT_TIMEOUT = 1800.0  # saving or loading a PyTorch image on a slow shared file system


@dataclass(frozen=True)
class PodmanResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class PodmanError(HpcschedError):
    def __init__(self, result: PodmanResult) -> None:
        self.result = result
        lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
        super().__init__(f"{' '.join(result.argv[:3])} failed: {lines[-1]}")


def run_podman(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> PodmanResult:
    """Run ``argv`` (``podman ...``) and return its output whatever its exit status; a missing
    binary is exit 127 and a timeout exit 124, as a shell would say."""
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return PodmanResult(tuple(argv), 127, "", f"{argv[0]} not found on PATH (is Podman installed?)")
    except subprocess.TimeoutExpired:
        return PodmanResult(tuple(argv), 124, "", f"no answer within {timeout:.0f} s")
    return PodmanResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


Runner = Callable[[Sequence[str]], PodmanResult]

# What Podman says when its state names containers whose processes are all gone.
STALE_STATE_HINT = "system migrate"


def podman_failed(result: PodmanResult) -> bool:
    """Podman itself failed (it logged an error) rather than answering "no" with exit status 1."""
    return any("level=error" in line or line.startswith("Error:") for line in result.stderr.splitlines())


@dataclass(frozen=True)
class Podman:
    """``podman`` with this node's global storage options; tests give it a fake runner."""

    global_args: tuple[str, ...] = ()
    runner: Runner = field(default=run_podman)

    def argv(self, *args: str) -> list[str]:
        return ["podman", *self.global_args, *args]

    def try_(self, *args: str) -> PodmanResult:
        """Run and return the result, failed or not."""
        return self.runner(self.argv(*args))

    def __call__(self, *args: str) -> str:
        """Run and return stdout, or raise :class:`PodmanError`."""
        result = self.try_(*args)
        if result.returncode != 0:
            raise PodmanError(result)
        return result.stdout

    def stale(self) -> bool:
        """Podman refuses every command until ``podman system migrate``: its state names running
        containers whose conmon and pause process are gone (killed with a job's cgroup, by the OOM
        killer), so it cannot join their user namespace nor make a new one."""
        probe = self.try_("container", "ls", "--quiet")
        return probe.returncode != 0 and STALE_STATE_HINT in probe.stderr

    def image_id(self, image: str) -> str | None:
        """The full id of ``image`` in this storage, or None when it is not there; raises
        :class:`PodmanError` when Podman cannot tell (its storage is broken or misconfigured)."""
        exists = self.try_("image", "exists", image)
        if exists.returncode == 1 and not podman_failed(exists):
            return None
        if exists.returncode != 0:
            raise PodmanError(exists)
        return self("image", "inspect", "--format", "{{.Id}}", image).strip() or None
