"""``hpcsched sweep``: a small hyperparameter or architecture search, one hpcsched job per trial."""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from hpcsched.cli.common import CliError, print_json, reports_errors, settings, table_console
from hpcsched.cli.job_options import JobOptions, check_files, job_options
from hpcsched.cli.progress import Progress
from hpcsched.config import Settings
from hpcsched.daemon import client
from hpcsched.errors import HpcschedError
from hpcsched.jobs import sweep_store
from hpcsched.jobs.metrics import metric_history
from hpcsched.jobs.sweep_record import SweepRecord, TrialRecord, metric_names, summary, trial_jobs, trial_status
from hpcsched.planning.fields import format_count
from hpcsched.planning.request import JobRequest
from hpcsched.planning.sweep import MAX_TRIALS, SweepSpec, default_sweep_name, expand, job_name, parse_sweep_name
from hpcsched.report.gather import STATUS_LIMIT, read_progress

HELP = {"help_option_names": ["-h", "--help"]}

RUN_EPILOG = """\b
Examples:
  # 3 x 2 = 6 jobs, every combination once; the script gets e.g. --epochs 10 --lr 0.01 --batch-size 64
  hpcsched sweep run train.py --grid lr=0.1,0.01,0.001 --grid batch-size=32,64 -- --epochs 10
  # 20 jobs with random hyperparameters, the same 20 for the same --seed
  hpcsched sweep run train.py --random 20 --log-uniform lr=1e-4:1e-1 --choice optimizer=sgd,adam --seed 7
  # each of 2 widths with the same 5 random learning rates: 10 jobs, named width-lr-0 ... width-lr-9
  hpcsched sweep run train.py --grid width=64,128 --random 5 --log-uniform lr=1e-4:1e-2 --name width-lr
  # list the trials and their arguments; submit nothing
  hpcsched sweep run train.py --grid lr=0.1,0.01 --nodes 2 --dry-run -- --epochs 10
"""

STATUS_EPILOG = """\b
Examples:
  hpcsched sweep status width-lr             # a row per trial: job, state, parameters, latest metrics
  hpcsched sweep status width-lr --json      # also every metric line of every trial
"""

LIST_EPILOG = """\b
Examples:
  hpcsched sweep list                        # name, created, trials submitted, script
  hpcsched sweep list --json
"""


@click.group(context_settings=HELP)
def sweep() -> None:
    """Search hyperparameters or architectures: one hpcsched job per trial.

    `sweep run` expands a grid or a random search into trials and submits each trial as an
    hpcsched job with `--NAME VALUE` arguments added to the script's. `sweep status` shows each
    trial's state and the latest value of every metric its script logged; `sweep list` shows the
    recorded sweeps. docs/sweep.md has the details.
    """


@sweep.command("run", epilog=RUN_EPILOG, context_settings=HELP, short_help="Submit one job per trial of a search.")
@job_options
@click.option(
    "--grid",
    multiple=True,
    metavar="NAME=V1,V2,...",
    help="Search every value of NAME, crossed with every other --grid (repeatable).",
)
@click.option(
    "--random",
    "samples",
    type=int,
    default=0,
    metavar="N",
    help="Draw N random trials from the --choice, --uniform and --log-uniform parameters "
    "(with --grid: N for every grid point, the same N draws).",
)
@click.option(
    "--choice",
    multiple=True,
    metavar="NAME=V1,V2,...",
    help="With --random: draw NAME from these values, each as likely (repeatable).",
)
@click.option(
    "--uniform",
    multiple=True,
    metavar="NAME=LOW:HIGH",
    help="With --random: draw NAME as a float uniformly from LOW to HIGH (repeatable).",
)
@click.option(
    "--log-uniform",
    multiple=True,
    metavar="NAME=LOW:HIGH",
    help="With --random: draw NAME as a float whose logarithm is uniform; 0 < LOW (repeatable).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draws.")
@click.option("--max-trials", type=int, default=MAX_TRIALS, show_default=True, help="Refuse a sweep of more trials than this.")
@click.option(
    "--name",
    "sweep_name",
    default=None,
    metavar="SWEEP",
    help="Sweep name; trial jobs are named SWEEP-<index> [default: sweep-YYYYmmdd-HHMMSS].",
)
@click.option("--dry-run", is_flag=True, help="Print the trials and their script arguments; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep's record as JSON.")
@reports_errors
def run_sweep(
    job: JobOptions,
    grid: tuple[str, ...],
    samples: int,
    choice: tuple[str, ...],
    uniform: tuple[str, ...],
    log_uniform: tuple[str, ...],
    seed: int,
    max_trials: int,
    sweep_name: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Submit one hpcsched job per trial of a search over SCRIPT's arguments.

    Takes every option of `hpcsched run`; each trial's job gets them all. A trial's parameters
    are added after the arguments given after `--`, as `--NAME VALUE`. Every trial is checked
    before the first is submitted, so a bad spec submits nothing. The sweep is recorded in the
    state directory (`sweeps/SWEEP.json`) with each trial's job id.
    """
    cfg = settings()
    now = time.time()
    spec = SweepSpec.from_options(
        grid=grid, choices=choice, uniform=uniform, log_uniform=log_uniform, samples=samples, seed=seed, max_trials=max_trials
    )
    name = default_sweep_name(now) if sweep_name is None else parse_sweep_name(sweep_name)
    record, requests = plan_sweep(cfg, job, spec, name, now)
    directory = sweep_store.sweeps_dir(cfg.state_dir)
    sweep_store.refuse_existing(directory, name)
    if dry_run:
        trials = format_count(len(record.trials), "trial")
        show_trials(record, as_json, f"sweep {name}: {trials} of {record.script} (dry run, nothing submitted)")
        return
    ping = client.ensure_daemon(cfg)
    record = dataclasses.replace(record, store_id=ping.get("store_id"))
    path = sweep_store.create(directory, record)
    record = submit_trials(cfg, directory, record, requests, as_json)
    show_trials(record, as_json, f"sweep {name}: {format_count(len(record.trials), 'trial')} submitted (record: {path})")


def plan_sweep(cfg: Settings, job: JobOptions, spec: SweepSpec, name: str, now: float) -> tuple[SweepRecord, list[JobRequest]]:
    """The sweep's record (no job ids yet) and every trial's validated request."""
    trials = expand(spec, job.script_args)
    requests = [job.request(cfg, job_name(name, t.index), t.args) for t in trials]
    check_files(requests[0])  # every trial runs the same script in the same work directory
    record = SweepRecord(
        name=name,
        created=now,
        script=requests[0].script,
        workdir=requests[0].workdir,
        spec=spec.as_dict(),
        trials=tuple(TrialRecord(t.index, r.name, t.params, t.args) for t, r in zip(trials, requests, strict=True)),
    )
    return record, requests


def submit_trials(
    cfg: Settings, directory: Path, record: SweepRecord, requests: Sequence[JobRequest], as_json: bool
) -> SweepRecord:
    """Submit trial by trial through the daemon, as ``hpcsched run`` does, saving the record after
    each. On an error, say which trials run as which jobs and which were not submitted."""
    progress = Progress(enabled=not as_json)
    for trial, request in zip(record.trials, requests, strict=True):
        try:
            submitted = client.call(cfg, "run", {"request": request.to_options()})
            record = record.with_job(trial.index, int(submitted["id"]))
            sweep_store.save(directory, record)
            progress.update(f"sweep {record.name}: {len(record.submitted)} of {len(record.trials)} trials submitted")
        except HpcschedError as e:
            progress.done()
            record = record.failed(f"trial {trial.index} ({trial.job_name}): {e}")
            report_partial(record, directory, as_json)
            raise CliError(f"sweep {record.name}: {record.error}") from None
    progress.done()
    return record


def report_partial(record: SweepRecord, directory: Path, as_json: bool) -> None:
    """Save and show a sweep that stopped midway; the lists come from memory, so they are shown
    even when the record cannot be written."""
    try:
        kept = f"the record keeps them: {sweep_store.save(directory, record)}"
    except HpcschedError as e:
        kept = f"the record could not be updated ({e})"
    if as_json:
        print_json(record.as_dict())
    done = ", ".join(f"{t.index} (job {t.job_id})" for t in record.submitted) or "none"
    click.echo(
        f"hpcsched: sweep {record.name} stopped after {len(record.submitted)} of {len(record.trials)} trials; {kept}", err=True
    )
    click.echo(f"  submitted trials: {done}", err=True)
    click.echo(f"  not submitted: {', '.join(str(t.index) for t in record.unsubmitted)}", err=True)


def show_trials(record: SweepRecord, as_json: bool, title: str) -> None:
    if as_json:
        print_json(record.as_dict())
        return
    click.echo(title)
    table = _table("TRIAL", "JOB", "JOB NAME", "SCRIPT ARGS")
    for t in record.trials:
        table.add_row(*_cells(t.index, t.job_id, t.job_name, shlex.join(t.args)))
    table_console().print(table)


@sweep.command(
    "status", epilog=STATUS_EPILOG, context_settings=HELP, short_help="Show each trial's job, state, parameters and metrics."
)
@click.argument("name")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the sweep and its trials as JSON, with every trial's metric history."
)
@reports_errors
def status(name: str, as_json: bool) -> None:
    """Show each trial of sweep NAME: its job, state, parameters and the latest value of every
    metric its script logged (progress lines with "event": "metrics").

    States are those of `hpcsched status`, and NOT_SUBMITTED for a trial whose submission never
    happened, MISSING for a job this daemon does not know. The JSON form is an object with the
    record's fields and one object per trial with index, job_id, job_name, state, params, args,
    metrics (the latest values) and history (a list of {time, step, metrics}).
    """
    cfg = settings()
    record = sweep_store.load(sweep_store.sweeps_dir(cfg.state_dir), parse_sweep_name(name, "NAME"))
    ping = client.ensure_daemon(cfg)
    if record.store_id is not None and ping.get("store_id") != record.store_id:
        click.echo(
            f"hpcsched: warning: sweep {record.name} was submitted to another daemon's store "
            f"({record.store_id}); its job ids may not be this daemon's",
            err=True,
        )
    jobs = trial_jobs(record, client.call(cfg, "status", {"limit": STATUS_LIMIT}))
    histories = {job_id: metric_history(read_progress(str(j.get("job_dir") or ""))) for job_id, j in jobs.items()}
    rows = trial_status(record, jobs, histories)
    if as_json:
        print_json({**record.as_dict(), "trials": rows})
        return
    params, metrics = list(record.trials[0].params) if record.trials else [], metric_names(rows)
    table = _table("TRIAL", "JOB", "STATE", *params, *metrics)
    for row in rows:
        table.add_row(
            *_cells(
                row["index"],
                row["job_id"],
                row["state"],
                *(row["params"].get(p) for p in params),
                *(_metric(row["metrics"].get(m)) for m in metrics),
            )
        )
    click.echo(f"sweep {record.name}: {len(record.submitted)} of {len(record.trials)} trials submitted, script {record.script}")
    table_console().print(table)


@sweep.command("list", epilog=LIST_EPILOG, context_settings=HELP, short_help="List the recorded sweeps.")
@click.option("--json", "as_json", is_flag=True, help="Print a list of sweep objects as JSON.")
@reports_errors
def list_sweeps(as_json: bool) -> None:
    """List the recorded sweeps, oldest first: name, creation time, trials submitted, script.

    The JSON form is a list of objects with name, created, script, trials, submitted and error
    (why submitting stopped midway, or null).
    """
    records, problems = sweep_store.load_all(sweep_store.sweeps_dir(settings().state_dir))
    for problem in problems:
        click.echo(f"hpcsched: warning: {problem}", err=True)
    if as_json:
        print_json([summary(r) for r in records])
        return
    if not records:
        click.echo("no sweeps")
        return
    table = _table("NAME", "CREATED", "SUBMITTED", "SCRIPT")
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        table.add_row(*_cells(r.name, created, f"{len(r.submitted)}/{len(r.trials)}", r.script))
    table_console().print(table)


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=column != "SCRIPT ARGS")
    return table


def _cells(*values: Any) -> list[Text]:
    """Cells as plain text: parameter values are the user's, never rich markup."""
    return [Text("-" if v is None else str(v)) for v in values]


def _metric(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"
