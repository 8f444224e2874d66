"""``hpcsched run``: submit a training script as an hpcsched job."""

from __future__ import annotations

import os
from typing import Any

import click

from hpcsched.cli.common import CliError, print_json, reports_errors, settings
from hpcsched.cli.follow import follow_log
from hpcsched.daemon import client
from hpcsched.planning import preflight
from hpcsched.planning.plan import plan_submission
from hpcsched.planning.request import JobRequest

EPILOG = """\b
Examples:
  hpcsched run train.py --nodes 2 -- --epochs 3
  hpcsched run train.py --nodes 1-4 --gpus-per-node 4 --time 24:00:00 -- --epochs 90
  hpcsched run train.py --nodes 2 --dry-run      # print the batch script and sbatch argv
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("script")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--nodes", "-N", default="1", show_default=True,
              help="Node count N, or a range MIN-MAX for an elastic job.")
@click.option("--start-nodes", type=int, default=None,
              help="For an elastic job: the node count to start with [default: as many of MIN-MAX as Slurm gives].")
@click.option("--max-failures", type=int, default=3, show_default=True,
              help="Node failures after which the job is not requeued again.")
@click.option("--gpus-per-node", default=0, show_default=True, help="GPUs per node (0 for CPU training).")
@click.option("--procs-per-node", default=None, type=int,
              help="Training processes per node [default: GPUs per node, or 1 without GPUs].")
@click.option("--cpus-per-node", default=1, show_default=True, help="CPU cores per node.")
@click.option("--mem", default=None, help="Memory per node, e.g. 4000M or 16G [default: the partition's].")
@click.option("--time", "time_", default=None, help="Time limit: M, H:M:S, D-H:M:S [default: the partition's].")
@click.option("--partition", "-p", default=None, help="Slurm partition.")
@click.option("--account", "-A", default=None, help="Slurm account to charge.")
@click.option("--qos", default=None, help="Slurm quality of service.")
@click.option("--image", default=None, help="Container image [default: $HPCSCHED_IMAGE or the hpcsched training image].")
@click.option("--name", "-J", default=None, help="Job name [default: the script's file name].")
@click.option("--env", "-e", multiple=True, metavar="KEY=VALUE", help="Environment variable for the script (repeatable).")
@click.option("--workdir", "-D", default=None, type=click.Path(file_okay=False),
              help="Directory mounted into the container and used as the working directory [default: current].")
@click.option("--sbatch", "sbatch_extra", multiple=True, metavar="--OPTION[=VALUE]",
              help="Extra sbatch directive, e.g. --sbatch=--constraint=a100 (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the batch script and sbatch command; submit nothing.")
@click.option("--follow", "-f", is_flag=True, help="Stream the job's log until it ends; exit with its status.")
@click.option("--json", "as_json", is_flag=True, help="Print the submitted job as JSON.")
@reports_errors
def run(script: str, script_args: tuple[str, ...], nodes: str, start_nodes: int | None, max_failures: int,
        gpus_per_node: int, procs_per_node: int | None,
        cpus_per_node: int, mem: str | None, time_: str | None, partition: str | None, account: str | None,
        qos: str | None, image: str | None, name: str | None, env: tuple[str, ...], workdir: str | None,
        sbatch_extra: tuple[str, ...], dry_run: bool, follow: bool, as_json: bool) -> None:
    """Run SCRIPT on the cluster under torchrun, in rootless Podman containers.

    Writes a Slurm batch script, submits it through the hpcsched daemon (started on first use),
    and prints the job id. Arguments after `--` are passed to SCRIPT.
    """
    cfg = settings()
    workdir_abs = os.path.abspath(workdir or os.getcwd())
    options: dict[str, Any] = {
        "script": os.path.abspath(script), "workdir": workdir_abs, "name": name, "nodes": nodes,
        "start_nodes": start_nodes, "max_failures": max_failures,
        "script_args": list(script_args), "gpus_per_node": gpus_per_node, "procs_per_node": procs_per_node,
        "cpus_per_node": cpus_per_node, "mem": mem, "time": time_, "partition": partition,
        "account": account, "qos": qos, "image": image or cfg.image, "env": list(env), "sbatch": list(sbatch_extra),
    }
    request = JobRequest.from_options(options)
    preflight.check_workdir(request.workdir)
    preflight.check_script(request.script)
    if dry_run:
        plan = plan_submission(request, job_id=0, store_id="dry-run", job_dir=f"{cfg.jobs_dir}/<id>",
                               python=cfg.launcher_python)
        click.echo(plan.describe(), nl=False)
        return
    client.ensure_daemon(cfg)
    job = client.call(cfg, "run", {"request": request.to_options()})
    if as_json:
        print_json(job)
    else:
        click.echo(f"hpcsched job {job['id']} submitted as Slurm job {job['slurm_job_id']} ({job['name']})")
    if follow:
        state = follow_log(cfg, job["id"], None)
        if state != "COMPLETED":
            raise CliError(f"job {job['id']} ended {state}")
