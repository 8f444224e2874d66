"""``hpcsched run``: submit a training script as an hpcsched job."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from hpcsched.cli.common import CliError, print_json, reports_errors, settings
from hpcsched.cli.follow import follow_log
from hpcsched.cli.job_options import JobOptions, check_files, job_options
from hpcsched.config import Settings
from hpcsched.daemon import client
from hpcsched.errors import DaemonNotRunning
from hpcsched.planning import preflight
from hpcsched.planning.dry_run import describe
from hpcsched.slurm.runner import ignored_variables

# How long `run` waits for the daemon's sbatch before it answers "accepted, not yet in Slurm".
SUBMIT_WAIT_S = 120.0

EPILOG = """\b
Examples:
  hpcsched run train.py --nodes 2 -- --epochs 3
  hpcsched run train.py --nodes 1-4 --gpus-per-node 4 --time 24:00:00 -- --epochs 90
  hpcsched run train.py --nodes 2 --dry-run      # print what would be submitted and run on each node
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@job_options
@click.option("--name", "-J", default=None, help="Job name [default: the script's file name].")
@click.option("--dry-run", is_flag=True,
              help="Print the sbatch command, batch script, job directory and each node's podman run and "
              "torchrun command lines, as the daemon would submit them; submit nothing.")
@click.option("--follow", "-f", is_flag=True, help="Stream the job's log until it ends; exit with its status.")
@click.option("--json", "as_json", is_flag=True, help="Print the submitted job (with --dry-run: the plan) as JSON.")
@reports_errors
def run(job: JobOptions, name: str | None, dry_run: bool, follow: bool, as_json: bool) -> None:
    """Run SCRIPT on the cluster under torchrun, in rootless Podman containers.

    Writes a Slurm batch script, submits it through the hpcsched daemon (started on first use),
    and prints the job id. Arguments after `--` are passed to SCRIPT.
    """
    cfg = settings()
    request = job.request(cfg, name)
    check_files(request)
    if not preflight.check_workdir_tree(request.workdir, request.script, skip=(cfg.jobs_dir,)):
        click.echo(f"hpcsched: checked the first {preflight.MAX_TREE_ENTRIES:,} entries of {request.workdir} for "
                   "symbolic links out of it; links further down were not checked", err=True)
    warn_ignored_environment()
    client.ensure_daemon(cfg)
    if dry_run:  # the daemon plans it, with the settings and environment it submits with
        view = client.call(cfg, "plan", {"request": request.to_options()})
        if as_json:
            print_json(view)
        else:
            click.echo(describe(view), nl=False)
        return
    accepted = client.call(cfg, "run", {"request": request.to_options(), "submit_now": False})
    submitted = wait_for_slurm(cfg, accepted)
    if submitted.get("slurm_job_id") is None:
        click.echo(f"hpcsched job {submitted['id']} accepted; Slurm has not taken it yet "
                   f"(`hpcsched status {submitted['id']}` shows when it has)", err=True)
    if as_json:
        print_json(submitted)
    elif submitted.get("slurm_job_id") is not None:
        click.echo(f"hpcsched job {submitted['id']} submitted as Slurm job {submitted['slurm_job_id']} ({submitted['name']})")
    if follow:
        state = follow_log(cfg, submitted["id"], None)
        if state != "COMPLETED":
            raise CliError(f"job {submitted['id']} ended {state}")


def wait_for_slurm(cfg: Settings, job: dict[str, Any], timeout: float = SUBMIT_WAIT_S) -> dict[str, Any]:
    """The daemon acknowledges a job once it is recorded and runs sbatch right after: wait for
    the Slurm id (or sbatch's refusal) so that `run` reports what Slurm did, as before."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while job.get("slurm_job_id") is None and job.get("state") == "SUBMITTING" and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(1.0, delay * 2)
        try:
            job = dict(client.call(cfg, "status", {"job": job["id"]})[0])
        except DaemonNotRunning:
            raise CliError(f"hpcsched job {job['id']} was recorded, but the daemon stopped before submitting it; "
                           "it is submitted when the daemon starts again (`hpcsched daemon start`)") from None
    if job.get("slurm_job_id") is None and job.get("state") in ("FAILED", "CANCELLED"):
        raise CliError(f"hpcsched job {job['id']} {job['state']}: {job.get('reason') or 'not submitted'}")
    return job


def warn_ignored_environment() -> None:
    """Slurm's own variables and shell start-up files in the caller's environment reach neither
    sbatch nor the job (docs/runtime.md); say so, since a user may have set them on purpose."""
    names = ignored_variables(os.environ)
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        click.echo(f"hpcsched: ignoring {shown} from your environment: a job gets an explicit environment; "
                   "use hpcsched's options, --sbatch or --env instead", err=True)
