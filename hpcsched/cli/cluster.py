"""``hpcsched rebalance`` and ``hpcsched cron``: the cluster-level pass and its schedule."""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from typing import Any

import click
from rich.table import Table

from hpcsched.cli.common import CliError, InvalidInput, print_json, reports_errors, settings, table_console
from hpcsched.cli.site import ask_coordinator, show_plan
from hpcsched.config import MAX_REBALANCE_WAIT_S
from hpcsched.daemon import client, statedir
from hpcsched.doctor.probes import cron_running, running_commands
from hpcsched.planning.fields import shown
from hpcsched.settings.files import SITE_FILE_ENV
from hpcsched.settings.schema import SETTINGS
from hpcsched.slurm.runner import PASSED_VARIABLES

HELP = {"help_option_names": ["-h", "--help"]}
MARKER = "# hpcsched rebalance"
CRON_WAIT_S = 60
# What the cron pass takes over from the shell that installed it, so that it runs with the user's
# settings: every setting's variable, where the site and user files are, the variables the jobs
# carry to the nodes, and PATH (cron gives a bare one).
PASSED_ENV = tuple(dict.fromkeys([*(s.env for s in SETTINGS), SITE_FILE_ENV, "XDG_CONFIG_HOME", *PASSED_VARIABLES,
                                  "PATH"]))


def decisions_table(result: dict[str, Any]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("JOB", "NAME", "NODES", "TARGET", "GAIN s", "COST s", "ACTION", "REASON"):
        table.add_column(column, no_wrap=column != "REASON")
    for d in result["decisions"]:
        gain_text = gain_shown(d)
        if d.get("waiting"):  # waits in the queue: Slurm starts it if the pass made room
            action = "admit" if d["target_nodes"] else "wait"
        elif d.get("applied"):
            action = "resized"
        elif d.get("error"):
            action = "error: " + d["error"]
        else:
            action = "would resize" if d["target_nodes"] != d["current_nodes"] else "keep"
        table.add_row(str(d["job"]), d["name"], str(d["current_nodes"]), str(d["target_nodes"]), gain_text,
                      f"{d['cost_s']:.0f}", action, d["reason"])
    return table


def gain_shown(d: dict[str, Any]) -> str:
    """A running job timed at one size only has no measured gain for another: say so, not 0."""
    gain = d["gain_s"]
    if not d.get("waiting") and len(d.get("measured_nodes", [None, None])) < 2:
        return "not measured yet"
    return f"{gain:.0f}" if isinstance(gain, (int, float)) and math.isfinite(gain) else str(gain)


@click.command(context_settings=HELP)
@click.option("--dry-run", is_flag=True, help="Decide and explain, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing unless something changed (for cron).")
@click.option("--wait", "wait_s", type=click.FloatRange(0, MAX_REBALANCE_WAIT_S), default=0.0, show_default=True,
              metavar="SECONDS", help="If another pass is running, wait this long for it to end before reporting busy.")
@click.option("--all-users", is_flag=True, help="Site mode, with --dry-run: the coordinator's plan for every "
              "user's jobs (operators only).")
@click.option("--log", "log_path", default=None, metavar="FILE", help="Append everything this pass prints to FILE "
              "(created 0600; never written through a symbolic link). The cron entry logs this way.")
@reports_errors
def rebalance(dry_run: bool, as_json: bool, quiet: bool, wait_s: float, all_users: bool, log_path: str | None) -> None:
    """One cluster-level pass: size every running elastic job for the most useful work.

    Reads the cluster (sinfo, squeue) and each elastic job's measured throughput, asks the
    allocator for target sizes, and resizes a job only when the predicted time saved over its
    remaining run exceeds what the resize costs (checkpoint, queue wait, container start; a grow
    trains on while the larger allocation waits). A job is grown to at most twice the nodes it
    has run on, so a guess about sizes it has not shown is tested one doubling at a time.
    Your jobs that wait in the queue for nodes count too (ACTION admit or wait): a shrink may
    make room for them, and Slurm starts them on the nodes set free. The daemon runs such a pass
    by itself, applying only those shrinks and only when they save more time than they cost, when
    it sees a job start waiting.
    Safe from cron: a second pass while one runs reports busy (exit 1) and changes nothing, or
    with --wait first waits for the running one to end (the cron entry waits 60 s, so that a
    pass colliding with the daemon's own admission pass runs after it rather than failing).

    In site mode (a coordinator is configured) the coordinator decides for everybody: --dry-run
    shows its plan (your jobs in full, other users' anonymised; --all-users for operators) and a
    pass of your own is refused.
    """
    if log_path is not None:
        append_output_to(log_path)
    if all_users:
        if not dry_run:
            raise InvalidInput("--all-users needs --dry-run: only the site coordinator decides for every user")
        show_plan(ask_coordinator(None, "plan", {"all_users": True}), as_json)
        return
    cfg = settings()
    client.ensure_daemon(cfg)
    result = client.call(cfg, "rebalance", {"dry_run": dry_run, "wait_s": wait_s}, timeout=120.0 + wait_s)
    if result.get("site"):
        show_plan(result, as_json)
        return
    if as_json:
        print_json(result)
        return
    changed = [d for d in result["decisions"] if d.get("applied")]
    if quiet and not changed:
        return
    if not result["decisions"]:
        click.echo("no running elastic job to size" + (f" ({len(result['skipped'])} without measurements yet)"
                                                       if result["skipped"] else ""))
        return
    table_console().print(decisions_table(result))


def append_output_to(path: str) -> None:
    """Send this process's output and errors to the end of ``path``, as ``>> path 2>&1`` would,
    except that a symbolic link planted at ``path`` is refused (exit 2, on the old stderr: cron
    mails it), never followed (G5)."""
    fd = statedir.open_private_file(path, os.O_WRONLY | os.O_APPEND)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, sys.stdout.fileno())
    os.dup2(fd, sys.stderr.fileno())
    os.close(fd)


def read_log_tail(path: str, lines: int = 10) -> list[str]:
    """The last lines of the rebalance log; none when it does not exist. A link there is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as e:
        statedir.refuse_link(path)
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None
    with open(fd, encoding="utf-8", errors="replace") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CliError(f"{path} is not a regular file: hpcsched will not read it; remove it")
        return f.read().splitlines()[-lines:]


def parse_every(text: str) -> str:
    """``10m`` / ``2h`` / ``1d`` → the crontab time fields."""
    m = re.fullmatch(r"(\d{1,3})([mhd])", text.strip())
    if not m:
        raise InvalidInput(f"--every: {shown(text)} is not an interval such as 10m, 2h or 1d")
    n, unit = int(m.group(1)), m.group(2)
    limits = {"m": 59, "h": 23, "d": 1}
    if not 1 <= n <= limits[unit]:
        raise InvalidInput(f"--every: {text!r} must be 1-{limits[unit]}{unit}")
    return {"m": f"*/{n} * * * *", "h": f"0 */{n} * * *", "d": "0 3 * * *"}[unit]


NO_CRON = ("no cron daemon runs on this host, so nothing runs the entry: ask the administrators to run cron "
           "on the login nodes (e.g. `systemctl enable --now cron`); until then run `hpcsched rebalance` yourself")


def cron_daemon_running() -> bool | None:
    """None when this host's processes cannot be seen (then nothing is claimed)."""
    return cron_running(running_commands())


def crontab_lines() -> list[str]:
    proc = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def write_crontab(lines: list[str]) -> None:
    text = "\n".join(lines) + ("\n" if lines else "")
    proc = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CliError(f"crontab refused the change: {proc.stderr.strip()}")


def cron_entry(schedule: str) -> str:
    cfg = settings()
    exe = shutil.which("hpcsched") or os.path.join(os.path.dirname(sys.executable), "hpcsched")
    env = " ".join(f"{k}={cron_quote(os.environ[k])}" for k in PASSED_ENV if os.environ.get(k))
    log = cron_quote(os.path.join(cfg.state_dir, "rebalance.log"))
    return f"{schedule} {env} {cron_quote(exe)} rebalance --quiet --wait {CRON_WAIT_S} --log {log} {MARKER}"


def cron_quote(value: str) -> str:
    """A word of a crontab command: quoted for the shell, and ``%`` escaped, which cron would
    otherwise turn into a newline."""
    return shlex.quote(value).replace("%", "\\%")


@click.group(context_settings=HELP)
def cron() -> None:
    """Run `hpcsched rebalance` regularly from your crontab."""


@cron.command(context_settings=HELP)
@click.option("--every", default="10m", show_default=True, help="Interval: Nm (minutes), Nh (hours) or 1d.")
@reports_errors
def install(every: str) -> None:
    """Add (or replace) hpcsched's rebalance entry in your crontab.

    The entry carries the HPCSCHED_* setting variables, HPCSCHED_SITE_CONFIG, XDG_CONFIG_HOME and
    PATH as this shell has them, so the cron pass runs with the settings `hpcsched config show`
    shows here. Install again after changing them.
    """
    entry = cron_entry(parse_every(every))
    write_crontab([line for line in crontab_lines() if MARKER not in line] + [entry])
    click.echo(f"installed: {entry}")
    if cron_daemon_running() is False:
        raise CliError(f"the entry is installed, but {NO_CRON}")


@cron.command(context_settings=HELP)
@reports_errors
def remove() -> None:
    """Remove hpcsched's entry from your crontab (other entries stay)."""
    lines = crontab_lines()
    kept = [line for line in lines if MARKER not in line]
    if len(kept) == len(lines):
        click.echo("no hpcsched entry in your crontab")
        return
    write_crontab(kept)
    click.echo("removed the hpcsched rebalance entry")


@cron.command(name="status", context_settings=HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@reports_errors
def cron_status(as_json: bool) -> None:
    """Show hpcsched's crontab entry and the end of the rebalance log. Exit 1 if none is installed
    or no cron daemon runs on this host."""
    entries = [line for line in crontab_lines() if MARKER in line]
    log = os.path.join(settings().state_dir, "rebalance.log")
    tail = read_log_tail(log)
    if any(" >> " in line for line in entries):
        click.echo("hpcsched: this entry logs through the shell, which would follow a link planted at the log's "
                   "path: `hpcsched cron install` replaces it with one that logs safely", err=True)
    running = cron_daemon_running()
    if as_json:
        print_json({"installed": bool(entries), "entries": entries, "cron_running": running, "log": log,
                    "log_tail": tail})
    else:
        click.echo("\n".join(entries) if entries else "no hpcsched entry in your crontab")
        if tail:
            click.echo(f"--- {log}\n" + "\n".join(tail))
    if running is False:
        click.echo(f"hpcsched: {NO_CRON}", err=True)
    if not entries or running is False:
        raise SystemExit(1)
