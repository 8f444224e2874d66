"""The doctor's thin shell: gathers what the verdicts judge, through injected runners.

A :class:`Host` holds every effect (Slurm commands, file reads, the process list, a socket
connect), so unit tests run the whole checklist on captured outputs. On a cluster at most two
``srun`` steps run, each bounded: ``--immediate`` gives up when no node is free within the wait.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hpcsched.config import Settings
from hpcsched.doctor import login, node
from hpcsched.doctor.findings import Finding, skip
from hpcsched.images.shared import manifest_path, store_dir
from hpcsched.launcher.storage import nearest_existing, parse_mounts
from hpcsched.slurm.runner import SLURM_COMMANDS, CommandResult, SlurmCommandError, run_slurm

CRON_DAEMONS = frozenset({"cron", "crond", "cronie", "fcron", "anacron", "systemd-cron"})
CRON_MARKER = "# hpcsched rebalance"
STEP_EXTRA_S = 120.0  # beyond the wait for a node: podman info on a node that never ran Podman is slow


def read_text(path: str) -> str | None:
    """A file's text, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def running_commands() -> list[str] | None:
    """The command names of this host's processes, or None when /proc shows only our own."""
    names = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        text = read_text(f"/proc/{pid}/comm")
        if text:
            names.append(text.strip())
    return names if len(names) > 3 else None


def cron_running(names: list[str] | None) -> bool | None:
    """Whether a cron daemon is among this host's processes (None: /proc does not tell)."""
    return None if names is None else bool(CRON_DAEMONS.intersection(names))


def crontab() -> str:
    proc = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def reach(path: str) -> str | None:
    """Why nothing accepts a connection on the Unix socket ``path``, or None when something does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        try:
            s.connect(path)
        except OSError as e:
            return e.strerror or str(e)
    return None


@dataclass(frozen=True)
class Host:
    """Every effect the checklist has; tests replace them with captured outputs."""

    slurm: Callable[..., CommandResult] = run_slurm
    read: Callable[[str], str | None] = read_text
    which: Callable[[str], str | None] = shutil.which
    processes: Callable[[], list[str] | None] = running_commands
    crontab: Callable[[], str] = crontab
    reach: Callable[[str], str | None] = reach
    existing: Callable[[str], str] = nearest_existing
    mount_table: str = "/proc/self/mounts"
    user: str = field(default_factory=lambda: pwd.getpwuid(os.getuid()).pw_name)
    uid: int = field(default_factory=os.getuid)


def checklist(cfg: Settings, host: Host, wait_s: float) -> list[Finding]:
    """Every check, in the order a user fixes them."""
    findings = [slurm(host), accounting(host), login.subordinate_ids(host.user, host.uid, host.read("/etc/subuid"),
                                                                     host.read("/etc/subgid"))]
    findings += node_probe(cfg, host, wait_s)
    findings.append(login.state_dir(cfg.state_dir, host.existing(cfg.state_dir),
                                    parse_mounts(host.read(host.mount_table) or "")))
    findings.append(regular_passes(cfg, host))
    findings.append(gpus(cfg, host, wait_s))
    return findings


def slurm(host: Host) -> Finding:
    missing = sorted(c for c in SLURM_COMMANDS - {"sacctmgr"} if host.which(c) is None)
    try:
        version, error = host.slurm(["sinfo", "--version"]).stdout, None
    except SlurmCommandError as e:
        version, error = None, str(e)
    return login.slurm_commands(version, error, missing)


def accounting(host: Host) -> Finding:
    try:
        host.slurm(["sacct", "-n", "-X", "-P", "-o", "JobID", "-j", "1"])
    except SlurmCommandError as e:
        return login.accounting(e.stderr.strip() or str(e))
    return login.accounting(None)


def step_argv(cfg: Settings, wait_s: float, extra: Sequence[str], script: str, *args: str) -> list[str]:
    """A small 1-node step (one task, one core, 256 MiB, 5 minutes) with the user's partition,
    account and qos settings that gives up when no node is free within ``wait_s``."""
    argv = ["srun", "-N1", "-n1", "-c1", "--mem=256M", "--time=5", "--job-name=hpcsched-doctor",
            f"--immediate={max(1, int(wait_s))}", *extra]
    argv += [f"--{name}={value}" for name, value in
             (("partition", cfg.partition), ("account", cfg.account), ("qos", cfg.qos)) if value]
    return [*argv, "/bin/sh", "-c", script, "hpcsched-doctor", *args]


def run_step(host: Host, argv: list[str], wait_s: float) -> tuple[node.NodeOutput | None, str]:
    try:
        result = host.slurm(argv, timeout=wait_s + STEP_EXTRA_S)
    except SlurmCommandError as e:
        if e.stdout.strip() and e.returncode is not None:  # the step ran; a section failed
            return node.parse_node_output(e.stdout), ""
        lines = [line for line in e.stderr.splitlines() if "error" in line.lower()] or [str(e)]
        return None, lines[-1].strip()
    return node.parse_node_output(result.stdout), ""


def node_probe(cfg: Settings, host: Host, wait_s: float) -> list[Finding]:
    pushed = (manifest_path(cfg.image_dir, cfg.image), store_dir(cfg.image_dir)) if cfg.image_dir else ("", "")
    argv = step_argv(cfg, wait_s, [], node.NODE_SCRIPT, cfg.image, cfg.jobs_dir, *pushed)
    out, error = run_step(host, argv, wait_s)
    if out is None:
        return node.no_node(error, wait_s)
    return node.node_checks(out, cfg.image, cfg.jobs_dir)


def regular_passes(cfg: Settings, host: Host) -> Finding:
    if cfg.coordinator_socket:
        return login.regular_passes(cfg.coordinator_socket, host.reach(cfg.coordinator_socket), None, False)
    return login.regular_passes("", None, cron_running(host.processes()), CRON_MARKER in host.crontab())


def gpus(cfg: Settings, host: Host, wait_s: float) -> Finding:
    """GPUs as Slurm allocates them, only where the partition has any."""
    try:
        table = host.slurm(["sinfo", "-h", "-o", "%P %G"]).stdout
    except SlurmCommandError as e:
        return skip("gpus", f"not checked: sinfo failed: {e}")
    partition, gres = partition_gres(table, cfg.partition)
    if not any(g.startswith("gpu") for g in gres):
        return skip("gpus", f"partition {partition} has no GPUs (Gres {', '.join(sorted(set(gres))) or '(null)'})")
    out, error = run_step(host, step_argv(cfg, wait_s, ["--gpus-per-node=1"], node.GPU_SCRIPT, cfg.launcher_python),
                          wait_s)
    return node.gpus(out) if out is not None else node.no_node(error, wait_s, ("gpus",))[0]


def partition_gres(table: str, wanted: str) -> tuple[str, list[str]]:
    """The partition ``wanted`` (empty: Slurm's default, marked ``*``; several: ``a,b``) and the
    Gres of its node groups, from ``sinfo -h -o "%P %G"``."""
    name, gres = wanted or "?", []
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and (parts[0].rstrip("*") in wanted.split(",") or (not wanted and parts[0].endswith("*"))):
            name = parts[0].rstrip("*")
            gres.append(parts[1])
    return name, gres
