"""``hpcsched daemon start|stop|status``: the personal daemon on the login node."""

from __future__ import annotations

import time
from typing import Any

import click
import psutil

from hpcsched.cli.common import CliError, format_duration, print_json, reports_errors, settings
from hpcsched.daemon import client
from hpcsched.errors import DaemonNotRunning

HELP = {"help_option_names": ["-h", "--help"]}


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs. An exited daemon whose parent has not reaped it yet (a
    zombie: a detached daemon's parent is init, and some inits reap late) has let go of its lock
    and socket already, so it counts as stopped."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@click.group(context_settings=HELP)
def daemon() -> None:
    """Manage your hpcsched daemon (started automatically by the first `hpcsched run`)."""


@daemon.command(context_settings=HELP)
@reports_errors
def start() -> None:
    """Start the daemon unless one is running."""
    info = client.ensure_daemon(settings())
    click.echo(f"hpcsched daemon running, pid {info['pid']}")


@daemon.command(context_settings=HELP)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for it to exit.")
@reports_errors
def stop(timeout: float) -> None:
    """Stop the daemon. Jobs keep running in Slurm; the next start picks them up again."""
    cfg = settings()
    try:
        result = client.call(cfg, "shutdown")
    except DaemonNotRunning:
        click.echo("hpcsched daemon is not running")
        return
    pid = int(result["pid"])
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if running(pid):
        raise CliError(f"daemon pid {pid} did not exit within {timeout:.0f} s")
    click.echo(f"hpcsched daemon stopped (pid {pid})")


@daemon.command(context_settings=HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@reports_errors
def status(as_json: bool) -> None:
    """Say whether the daemon runs, its pid, whether its monitor is healthy, and where its files
    are. Exit 1 if it is not running."""
    cfg = settings()
    try:
        info = dict(client.call(cfg, "ping", timeout=10))
        info["running"] = True
    except DaemonNotRunning:
        info = {"running": False}
    info.update(state_dir=cfg.state_dir, socket=cfg.socket_path, log=cfg.log_path, jobs_dir=cfg.jobs_dir)
    if as_json:
        print_json(info)
    elif info["running"]:
        click.echo(f"hpcsched daemon running, pid {info['pid']}, version {info['version']}, "
                   f"{info['open_jobs']} open jobs\n  monitor: {monitor_line(info.get('monitor'), time.time())}\n"
                   f"  state: {cfg.state_dir}\n  log:   {cfg.log_path}")
    else:
        click.echo(f"hpcsched daemon is not running (state: {cfg.state_dir})")
    if not info["running"]:
        raise SystemExit(1)


def monitor_line(health: dict[str, Any] | None, now: float) -> str:
    """The monitor's health in one line: healthy or UNHEALTHY with why, the last successful cycle
    and the last error (pure)."""
    if not health:
        return "unknown (daemon predates health reports)"
    last = health.get("last_cycle")
    parts = [f"last cycle {format_duration(now - last)} ago" if last is not None else "no cycle finished yet"]
    if health.get("consecutive_failures"):
        parts.append(f"{health['consecutive_failures']} failed in a row")
    if health.get("last_error"):
        parts.append(f"last error: {health['last_error']}")
    verdict = "healthy" if health.get("healthy") else "UNHEALTHY (" + "; ".join(health.get("problems") or []) + ")"
    return f"{verdict}, " + ", ".join(parts)
