"""``hpcsched site``: the site coordinator (run by the cluster's staff under a service account)
and what users and operators ask it."""

from __future__ import annotations

import time
from typing import Any

import click

from hpcsched.cli.common import CliError, print_json, reports_errors, settings, table_console
from hpcsched.daemon import client
from hpcsched.planning.fields import format_count

HELP = {"help_option_names": ["-h", "--help"]}


def _socket(explicit: str | None) -> str:
    path = explicit or settings().coordinator_socket
    if not path:
        raise CliError("no site coordinator is configured: give --socket, or set coordinator_socket "
                       "(HPCSCHED_COORDINATOR_SOCKET)")
    return path


def ask_coordinator(socket_path: str | None, op: str, args: dict[str, Any] | None = None) -> Any:
    return client.send(_socket(socket_path), op, args, timeout=60.0, who="site coordinator")


SOCKET = click.option("--socket", "socket_path", metavar="PATH", help="The coordinator's socket (default: the "
                      "coordinator_socket setting, HPCSCHED_COORDINATOR_SOCKET).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
ALL = click.option("--all-users", is_flag=True, help="Every user's jobs in full (operators only).")


@click.group(context_settings=HELP)
def site() -> None:
    """Site mode: one coordinator sizes every user's elastic jobs fairly and makes room for anybody
    waiting (docs/site.md). Users' commands stay as they are; their daemons report to it."""


@site.command(context_settings=HELP)
@click.option("--state-dir", required=True, metavar="DIR", help="Private state: lock, audit log, state file (local disk).")
@click.option("--socket", "socket_path", required=True, metavar="PATH", help="The socket every user's daemon connects to.")
@click.option("--decisions-dir", required=True, metavar="DIR",
              help="Where shrink decisions are written for the jobs' drivers: on the shared file system.")
@click.option("--interval", default=10.0, show_default=True, type=click.FloatRange(1.0, 600.0),
              help="Seconds between passes (one squeue and one sinfo each).")
@click.option("--operator", "operators", multiple=True, metavar="USER",
              help="A user who may see all users' jobs and the audit log (besides Slurm Operators and the site "
              "file's operators). Repeatable.")
@click.option("--grow-stall", default=300.0, show_default=True, type=click.FloatRange(5.0, 86400.0), metavar="SECONDS",
              help="A grow whose new allocation has not started this long after the decision is given up: the "
              "offer is withdrawn and the allocation, still waiting, cancelled (audited).")
@reports_errors
def coordinator(state_dir: str, socket_path: str, decisions_dir: str, interval: float, operators: tuple[str, ...],
                grow_stall: float) -> None:
    """Run the site coordinator in the foreground (systemd runs it so: contrib/systemd). Refuses
    to run as root; its account should be a Slurm Operator (it signals users' jobs to shrink)."""
    from hpcsched.site.run import SiteOptions, run_coordinator

    run_coordinator(SiteOptions(state_dir, socket_path, decisions_dir, interval, (*operators, *settings().operators),
                                grow_stall))


@site.command(context_settings=HELP)
@SOCKET
@ALL
@JSON
@reports_errors
def status(socket_path: str | None, all_users: bool, as_json: bool) -> None:
    """The coordinator's last pass: every elastic job's size and what it decided. Other users'
    jobs are anonymised unless you are an operator and give --all-users."""
    show_plan(ask_coordinator(socket_path, "status", {"all_users": all_users}), as_json)


@site.command(context_settings=HELP)
@SOCKET
@ALL
@JSON
@reports_errors
def plan(socket_path: str | None, all_users: bool, as_json: bool) -> None:
    """What a pass would decide now (nothing is carried out)."""
    show_plan(ask_coordinator(socket_path, "plan", {"all_users": all_users}), as_json)


@site.command(context_settings=HELP)
@SOCKET
@click.option("--since", default=0.0, type=float, help="Only entries at or after this Unix time.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="At most this many (newest).")
@JSON
@reports_errors
def audit(socket_path: str | None, since: float, limit: int, as_json: bool) -> None:
    """Every action the coordinator took on a job, with its reason (operators only)."""
    entries = ask_coordinator(socket_path, "audit", {"since": since, "limit": limit})["entries"]
    if as_json:
        print_json(entries)
        return
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(e.get("time") or 0)))
        what = f"{e.get('action', '')} {e.get('current', '')}->{e.get('target', '')}".strip()
        click.echo(f"{when}  {e.get('event', ''):8}  job {e.get('slurm_job_id', '')}  {e.get('user', '')}  {what}  "
                   f"{e.get('reason') or e.get('error') or ''}".rstrip())


def show_plan(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(view)
        return
    table = table_console()
    table.print("SLURM JOB  USER        PARTITION  NODES  TARGET  ACTION  REASON", markup=False, highlight=False)
    for d in view.get("decisions", []):
        table.print(f"{d.get('slurm_job_id', '-')!s:<10} {d.get('user', ''):<11} {d.get('partition', ''):<10} "
                    f"{d.get('current', 0):>5}  {d.get('target', 0):>6}  {d.get('action', ''):<6}  {d.get('reason', '')}",
                    markup=False, highlight=False)
    for p in view.get("partitions", []):
        blocked = (f", Slurm job {p['blocked']} waits for nodes ({format_count(p.get('kept', 0), 'idle node')} kept "
                   "for it)") if p.get("blocked") else ""
        capacity = format_count(p["capacity"], "node")
        table.print(f"partition {p['partition']}: {capacity} for elastic jobs, {p['reserved']} kept for "
                    f"waiting jobs of others{blocked}", markup=False, highlight=False)
    weights = view.get("weights") or {}
    if weights:
        shares = ", ".join(f"{user} {weight:.3g}" for user, weight in weights.items())
        table.print(f"fair-share weights from Slurm (relative): {shares}", markup=False, highlight=False)
