"""``python -m hpcsched.launcher``: run on every node by the batch script's ``srun``.

Starts the container, forwards the signals Slurm sends (TERM on cancel or time limit, USR1/USR2
for checkpoint requests) into it, and on any exit removes the container, so that a cancelled job
leaves no container, conmon or torchrun process behind (E1).
"""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from functools import partial
from types import FrameType

from hpcsched.images.node import ensure_image, node_images
from hpcsched.jobs import layout
from hpcsched.launcher.cdi import missing_gpus
from hpcsched.launcher.container import (
    LaunchSpec,
    NodeContext,
    container_name,
    group_only_access,
    missing_directory,
    parse_launch_args,
    podman_run_argv,
    ulimit_args,
)
from hpcsched.launcher.podman_state import recover_stale_state
from hpcsched.launcher.storage import check_node_storage

STOP_GRACE = 5.0
PODMAN_CANNOT_START = 126  # podman run: the OCI runtime could not start the container
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def parse_args(argv: list[str]) -> LaunchSpec:
    return parse_launch_args(argv, os.environ)


def read_pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 32768


def current_limits() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    inf = resource.RLIM_INFINITY
    return ulimit_args(nofile if nofile != inf else 1 << 20, nproc if nproc != inf else 1 << 22, read_pid_max())


def podman(base: Sequence[str], *args: str, timeout: float = 30.0) -> int:
    try:
        return subprocess.run([*base, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, check=False).returncode
    except (subprocess.TimeoutExpired, OSError):
        return -1


def check_subordinate_ids(user: str) -> str | None:
    """Rootless Podman needs /etc/subuid and /etc/subgid entries for the user (E4)."""
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                names = {line.split(":", 1)[0] for line in f if line.strip()}
        except OSError:
            names = set()
        if user not in names and str(os.getuid()) not in names:
            return f"no subordinate UIDs/GIDs for user {user} in {path}; ask your admin to add a range"
    return None


def explain_work_directory(workdir: str, node: str) -> None:
    """After a container that could not start: say so if the work directory needs a supplementary
    group (runc dropped it, and its "chdir to cwd ... permission denied" does not say why)."""
    try:
        why = group_only_access(workdir, os.stat(workdir), os.getuid(), os.getgroups(), os.getgid())
    except OSError:
        return
    if why:
        print(f"hpcsched launcher on {node}: {why}", file=sys.stderr)


def check_gpu_devices(spec: LaunchSpec, ctx: NodeContext) -> str | None:
    """The site's device style is one the launcher knows, and CDI names every allocated GPU."""
    if spec.gpu_device_style not in ("cdi", "dev"):
        return f"HPCSCHED_GPU_DEVICE_STYLE must be 'cdi' or 'dev', not {spec.gpu_device_style!r}"
    if spec.gpu_device_style == "cdi" and ctx.gpus:
        return missing_gpus(ctx.gpus, ctx.node_name, os.environ)
    return None


def record_problem(spec: LaunchSpec, ctx: NodeContext, problem: str) -> None:
    """Leave the reason where ``hpcsched status`` shows it, not only in the attempt's log."""
    try:
        layout.launcher_problem(spec.job_dir, ctx.attempt, ctx.node_name).write_text(problem + "\n", encoding="utf-8")
    except OSError as e:
        say(ctx.node_name, f"could not record the problem for `hpcsched status`: {e}")


def say(node: str, text: str) -> None:
    print(f"hpcsched launcher on {node}: {text}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    spec = parse_args(argv)
    ctx = NodeContext.from_env(os.environ)
    user = os.environ.get("USER") or str(os.getuid())
    images = node_images(ctx.node_name, os.environ)
    tell = partial(say, ctx.node_name)
    problem = (missing_directory(spec, ctx.node_name, os.path.isdir) or check_subordinate_ids(user)
               or check_gpu_devices(spec, ctx) or check_node_storage(ctx.node_name, os.environ)
               or recover_stale_state(images, tell) or ensure_image(spec.image, images, tell))
    if problem:
        print(f"hpcsched launcher on {ctx.node_name}: {problem}", file=sys.stderr)
        record_problem(spec, ctx, problem)
        return 2
    if ctx.gpus:
        print(f"hpcsched launcher on {ctx.node_name}: Slurm allocated GPUs {','.join(ctx.gpus)} of this node; "
              f"the container sees them as 0-{len(ctx.gpus) - 1}", file=sys.stderr, flush=True)
    name, base = container_name(ctx), images.podman.argv()
    podman(base, "rm", "--force", "--ignore", "--time", "0", name)
    # Its own session: the launcher alone decides which signal reaches the container, and when.
    argv = podman_run_argv(spec, ctx, current_limits(), base)
    say(ctx.node_name, f"{shlex.join(argv)}")  # the line `run --dry-run` showed, with Slurm's values
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    stopping = threading.Event()

    def forward(signum: int, _frame: FrameType | None) -> None:
        print(f"hpcsched launcher on {ctx.node_name}: passing {signal.Signals(signum).name} into container {name}",
              file=sys.stderr, flush=True)
        podman(base, "kill", "--signal", signal.Signals(signum).name, name, timeout=10)
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping.set()

    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        while True:
            try:
                return_code = proc.wait(timeout=STOP_GRACE if stopping.is_set() else None)
                break
            except subprocess.TimeoutExpired:
                podman(base, "rm", "--force", "--time", "0", name)
                stopping.clear()
    finally:
        podman(base, "rm", "--force", "--ignore", "--time", "0", name)
    print(f"hpcsched launcher on {ctx.node_name}: container exited with status {return_code}", file=sys.stderr)
    if return_code == PODMAN_CANNOT_START:
        explain_work_directory(spec.workdir, ctx.node_name)
    if return_code == layout.EXIT_CHECKPOINTED:
        say(ctx.node_name, "stopped at a checkpoint as asked: this step ends with status 0, so that Slurm does not "
            "record it as failed (the batch driver reads the attempt's checkpointed marker)")
        return 0
    return return_code if return_code >= 0 else 128 - return_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
