"""``hpcsched status``, ``logs`` and ``cancel``: reading and acting on submitted jobs."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from hpcsched.cli.common import format_duration, print_json, reports_errors, settings, table_console
from hpcsched.cli.follow import follow_log, no_log_note, print_log
from hpcsched.cli.progress import Progress
from hpcsched.daemon import client, owners
from hpcsched.jobs import layout
from hpcsched.planning.fields import format_count
from hpcsched.slurm.states import explain_reason

HELP = {"help_option_names": ["-h", "--help"]}


def progress_text(p: dict[str, Any] | None) -> str:
    """``step 120 (30%)``: the share of the job's samples (over all epochs), which a resize does not
    change, unlike the number of steps; else ``step 120/400 (30%)``, or the step alone."""
    if not p:
        return "-"
    done = fraction_done(p)
    if p.get("total_samples"):
        return f"step {p['step']} ({100 * (done or 0):.0f}%)"
    if done is not None:
        return f"{p['step']}/{p['total_steps']} ({100 * done:.0f}%)"
    return f"step {p['step']}"


def fraction_done(p: dict[str, Any]) -> float | None:
    """Samples done of the job's total (the runtime library since it reports them), else steps."""
    if p.get("total_samples"):
        return min(1.0, float(p.get("samples") or 0) / float(p["total_samples"]))
    if p.get("total_steps"):
        return min(1.0, float(p.get("step") or 0) / float(p["total_steps"]))
    return None


def eta_text(p: dict[str, Any] | None) -> str:
    if not p or p.get("eta") is None:
        return "-"
    if p.get("event") == "done":
        return "done"
    return time.strftime("%H:%M:%S", time.localtime(p["eta"]))


def job_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ("ID", "NAME", "USER", "STATE", "NODES", "SLURM", "ELAPSED", "PROGRESS", "SAMPLES/S", "ETA",
               "EXIT/REASON")
    for column in columns:
        table.add_column(column, no_wrap=column != "EXIT/REASON")
    for j in jobs:
        p = j.get("progress")
        rate = f"{p['throughput']:.1f}" if p and p.get("throughput") else "-"
        table.add_row(
            str(j["id"]), j["name"], j["user"], j["state"], str(j["nodes"] or "-"),
            str(j["slurm_job_id"] or "-"), format_duration(j["elapsed"]), progress_text(p), rate, eta_text(p),
            exit_or_reason(j),
        )
    return table


def exit_or_reason(job: dict[str, Any]) -> str:
    """A cancelled job has no exit code worth showing: Slurm records 0 for it, which reads as success.
    A launcher's problem (the image missing on a node...) is the reason a job failed."""
    if job["state"] == "CANCELLED":
        return explain_reason(job["reason"]) or "cancelled (no exit code)"
    code = "" if job["exit_code"] is None else f"exit {job['exit_code']}"
    if job.get("problem"):
        return f"{code}: {job['problem']}" if code else job["problem"]
    return explain_reason(job["reason"]) or code


def with_launcher_problems(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each job with ``problem``: why the launchers could not start its newest attempt's container
    ("on NODE: ..."; empty when none said so), read from the job's directory."""
    shown = []
    for job in jobs:
        attempts = job.get("attempts") or []
        found = layout.launcher_problems(job["job_dir"], attempts[-1]["number"]) if attempts and job.get("job_dir") \
            else {}
        shown.append({**job, "problem": "; ".join(f"on {node}: {text}" for node, text in found.items())})
    return shown


def progress_bars(jobs: list[dict[str, Any]]) -> Table:
    """One bar per job with known total steps: what ``status --watch`` shows."""
    table = Table(box=None, show_header=False, pad_edge=False)
    for j in jobs:
        p = j.get("progress") or {}
        done = fraction_done(p)
        bar = ProgressBar(total=1.0, completed=done, width=30) if done is not None else "no progress reported"
        table.add_row(f"{j['id']} {j['name']}", j["state"], bar, progress_text(p or None), eta_text(p or None))
    return table


@click.command(context_settings=HELP)
@click.argument("job", required=False, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print a list of job objects as JSON.")
@click.option("--watch", "-w", is_flag=True, help="Live table with progress bars until the jobs end (Ctrl-C stops).")
@click.option("--all-users", is_flag=True, help="Site mode: every user's elastic jobs as the site coordinator "
              "sized them last (operators only).")
@reports_errors
def status(job: int | None, as_json: bool, watch: bool, all_users: bool) -> None:
    """Show your jobs (or one JOB): state, size, Slurm id, elapsed time, exit code or reason.

    The JSON form is a list of objects with the keys id, name, user, state, nodes, node_list,
    slurm_job_id, elapsed, exit_code (null for a cancelled job), reason, problem (why the
    launchers could not start the newest attempt's container, e.g. the image missing on a node;
    empty when none), attempts (one object per attempt), created, job_dir and request. With
    --all-users (operators, site mode) the site coordinator's view of every user's elastic jobs
    instead, as `hpcsched site status --all-users` shows it.
    """
    if all_users:
        from hpcsched.cli.site import ask_coordinator, show_plan

        show_plan(ask_coordinator(None, "status", {"all_users": True}), as_json)
        return
    cfg = settings()
    client.ensure_daemon(cfg)
    jobs = with_launcher_problems(client.call(cfg, "status", {"job": job}))
    if watch:
        watch_jobs(cfg, job, jobs)
        return
    if as_json:
        print_json(jobs)
        return
    if not jobs:
        click.echo("no jobs")
    else:
        table_console().print(job_table(jobs))
    if job is None:
        for host, ids in owners.recent_elsewhere(cfg.jobs_dir, cfg.host).items():
            which = f"job {ids[0]} belongs" if len(ids) == 1 else f"jobs {', '.join(map(str, ids))} belong"
            click.echo(f"{which} to your daemon on login node {host}: run `hpcsched status` there")


def watch_jobs(cfg: Any, job: int | None, jobs: list[dict[str, Any]]) -> None:
    with Live(Group(job_table(jobs), progress_bars(jobs)), refresh_per_second=2) as live:
        while any(not _final(j["state"]) for j in jobs):
            time.sleep(1.0)
            jobs = with_launcher_problems(client.call(cfg, "status", {"job": job}))
            live.update(Group(job_table(jobs), progress_bars(jobs)))


@click.command(context_settings=HELP)
@click.argument("job", type=int)
@click.option("--nodes", "-N", required=True, type=int, help="The new node count, within the job's MIN-MAX.")
@click.option("--mode", type=click.Choice(["auto", "shrink", "grow", "requeue"]), default="auto", show_default=True,
              help="auto: shrink in place or grow make-before-break; requeue: checkpoint, requeue, resize.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@reports_errors
def resize(job: int, nodes: int, mode: str, as_json: bool) -> None:
    """Resize the running elastic JOB to --nodes nodes; it goes on from its last checkpoint.

    Only jobs submitted with --nodes MIN-MAX whose script uses the hpcsched runtime library can
    be resized. Shrinking releases nodes of the running allocation; growing queues the larger
    allocation and switches over only once it runs, so waiting in the queue costs no training.
    """
    cfg = settings()
    client.ensure_daemon(cfg)
    result = client.call(cfg, "resize", {"job": job, "nodes": nodes, "mode": mode})
    if as_json:
        print_json(result)
    else:
        cur = result["attempts"][-1]
        click.echo(f"job {job}: resize to {format_count(nodes, 'node')} requested (attempt {cur['number']}, "
                   f"{cur['state']})")


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
    if not print_log(info["path"]):
        click.echo(no_log_note(info), err=True)


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
    progress, started = Progress(enabled=not as_json), time.monotonic()
    while wait and not _final(result["state"]):
        progress.update(f"job {job}: {result['state']}, waiting for Slurm to end it ({time.monotonic() - started:.0f} s)")
        time.sleep(0.5)
        result = client.call(cfg, "status", {"job": job})[0]
    progress.done()
    if as_json:
        print_json(result)
    else:
        click.echo(f"job {job}: {result['state']}" + ("" if _final(result["state"]) else " (cancel requested)"))


def _final(state: str) -> bool:
    return state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"}


@click.command(context_settings=HELP)
@click.argument("job", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@reports_errors
def events(job: int, as_json: bool) -> None:
    """Show what happened to JOB, oldest first: submissions and state changes, resizes, hand-overs
    (and why one was held back), grows withdrawn, the rebalance passes' decisions and actions an
    operator took on it.

    The JSON form is an object with the keys job and events (a list of objects with the keys
    time (Unix seconds), kind and detail; a rebalance decision's detail is itself a JSON object).
    """
    cfg = settings()
    client.ensure_daemon(cfg)
    result = client.call(cfg, "events", {"job": job})
    if as_json:
        print_json(result)
        return
    for event in result["events"]:
        click.echo(event_line(event))


def event_line(event: dict[str, Any]) -> str:
    """``2026-12-06 12:44:28  handover_held  Slurm job 2159 waits ...`` in local time; a rebalance
    decision as ``grow 2 -> 3 nodes: <its reason>``."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["time"]))
    detail = str(event.get("detail") or "")
    if event["kind"] == "rebalance":
        try:
            d = json.loads(detail)
            detail = (f"{d['action']} {d['current_nodes']} -> {format_count(d['target_nodes'], 'node')}: {d['reason']}"
                      + ("" if d.get("applied", True) else " (not carried out)"))
        except (ValueError, KeyError, TypeError):
            pass  # an older record: shown as stored
    return f"{when}  {event['kind']:<16} {detail}".rstrip()
