"""``hpcsched report``: what each job and user got from Slurm, and how much of it was useful."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hpcsched.cli.common import reports_errors, settings
from hpcsched.report import gather, plots, render
from hpcsched.report.window import make_window

HELP = {"help_option_names": ["-h", "--help"]}


@click.command(context_settings=HELP)
@click.option("--since", default="7d", show_default=True,
              help="Start of the window: a date (2026-11-27), a local time (2026-11-27T10:00) or an age (7d, 24h, 30m).")
@click.option("--until", default="now", show_default=True, help="End of the window, in the same forms.")
@click.option("--user", default=None, help="Only this user's jobs [default: yours; all users for an operator].")
@click.option("--all-users", is_flag=True,
              help="Every user's jobs from Slurm accounting (operators only): what each cost; useful work unknown.")
@click.option("--job", "job_ids", type=int, multiple=True, help="Only this job (repeatable); the window is then ignored.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write PNG plots into this directory.")
@click.option("--sacct-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for Slurm accounting before reporting without it.")
@click.pass_context
@reports_errors
def report(ctx: click.Context, since: str, until: str, user: str | None, all_users: bool, job_ids: tuple[int, ...],
           fmt: str, plot_dir: Path | None, sacct_timeout: float) -> None:
    """Report queue wait, run time, node-, CPU- and GPU-hours of your jobs and every attempt of
    them, joined from hpcsched's records and Slurm accounting (one sacct call), and for jobs that
    report progress their useful work, redone work, restart time and goodput.

    Jobs active in the window are reported whole. When sacct fails or does not answer, the report
    still shows hpcsched's records and marks the Slurm-derived values unknown.

    With --all-users (operators: the site's operator list or Slurm's AdminLevel, as the site
    coordinator judges them) every user's jobs come from one sacct call: hpcsched's jobs (their
    runs grouped by the tag in their comment) and plain Slurm jobs, what each cost, per user.
    """
    sources = ctx.obj if isinstance(ctx.obj, gather.Sources) else gather.Sources()
    window = make_window(since, until, sources.clock())
    request = gather.Request(window=window, user=user, job_ids=job_ids, sacct_timeout=sacct_timeout)
    make = gather.make_all_users_report if all_users else gather.make_report
    result = make(settings(), request, sources)
    if result.accounting_error is not None:
        click.echo(f"hpcsched: warning: Slurm accounting unavailable ({result.accounting_error}); "
                   "Slurm-derived values are shown as unknown", err=True)
    if fmt == "json":
        click.echo(render.to_json(result), nl=False)
    elif fmt == "csv":
        click.echo(render.to_csv(result), nl=False)
    else:
        render.write_table(result, sys.stdout)
    if plot_dir is not None:
        for path in plots.write_plots(result, plot_dir):
            click.echo(f"wrote {path}", err=True)


if __name__ == "__main__":
    report(prog_name="hpcsched report")
