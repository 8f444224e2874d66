"""``hpcsched status``, ``logs`` and ``cancel``: reading and acting on submitted jobs."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from hpcsched.cli.common import format_duration, print_json, reports_errors, settings
from hpcsched.cli.follow import follow_log, print_log
from hpcsched.daemon import client

HELP = {"help_option_names": ["-h", "--help"]}


def job_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "NAME", "USER", "STATE", "NODES", "SLURM", "ELAPSED", "EXIT/REASON"):
        table.add_column(column, no_wrap=column != "EXIT/REASON")
    for j in jobs:
        exit_or_reason = j["reason"] or ("" if j["exit_code"] is None else f"exit {j['exit_code']}")
        table.add_row(
            str(j["id"]), j["name"], j["user"], j["state"], str(j["nodes"] or "-"),
            str(j["slurm_job_id"] or "-"), format_duration(j["elapsed"]), exit_or_reason,
        )
    return table


@click.command(context_settings=HELP)
@click.argument("job", required=False, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print a list of job objects as JSON.")
@reports_errors
def status(job: int | None, as_json: bool) -> None:
    """Show your jobs (or one JOB): state, size, Slurm id, elapsed time, exit code or reason.

    The JSON form is a list of objects with the keys id, name, user, state, nodes, node_list,
    slurm_job_id, elapsed, exit_code, reason, attempts (one object per attempt), created,
    job_dir and request.
    """
    cfg = settings()
    client.ensure_daemon(cfg)
    jobs = client.call(cfg, "status", {"job": job})
    if as_json:
        print_json(jobs)
    elif not jobs:
        click.echo("no jobs")
    else:
        Console(soft_wrap=True).print(job_table(jobs))


@click.command(context_settings=HELP)
@click.argument("job", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the log grows, until the job ends.")
@click.option("--attempt", type=int, default=None, help="Show this attempt's log [default: the newest].")
@reports_errors
def logs(job: int, follow: bool, attempt: int | None) -> None:
    """Print the output of JOB (all ranks, all nodes), one log per attempt."""
    cfg = settings()
    client.ensure_daemon(cfg)
    if follow:
        follow_log(cfg, job, attempt)
        return
    info = client.call(cfg, "log_path", {"job": job, "attempt": attempt})
    print_log(info["path"])


@click.command(context_settings=HELP)
@click.argument("job", type=int)
@click.option("--wait", is_flag=True, help="Wait until Slurm reports the job ended.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@reports_errors
def cancel(job: int, wait: bool, as_json: bool) -> None:
    """Cancel JOB: Slurm stops it on every node and its containers are removed."""
    cfg = settings()
    client.ensure_daemon(cfg)
    result = client.call(cfg, "cancel", {"job": job})
    while wait and not _final(result["state"]):
        time.sleep(0.5)
        result = client.call(cfg, "status", {"job": job})[0]
    if as_json:
        print_json(result)
    else:
        click.echo(f"job {job}: {result['state']}" + ("" if _final(result["state"]) else " (cancel requested)"))


def _final(state: str) -> bool:
    return state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"}
