"""The ``hpcsched`` command group."""

from __future__ import annotations

import click

from hpcsched import __version__
from hpcsched.cli.cluster import cron, rebalance
from hpcsched.cli.daemon import daemon
from hpcsched.cli.jobs import cancel, logs, resize, status
from hpcsched.cli.model import model
from hpcsched.cli.report import report
from hpcsched.cli.run import run
from hpcsched.cli.simulate import simulate
from hpcsched.cli.sweep import sweep


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpcsched")
def cli() -> None:
    """hpcsched: run PyTorch training on Slurm in rootless containers under torchrun.

    `hpcsched run train.py` writes the Slurm batch script, submits it, and keeps track of the
    job; `status`, `logs` and `cancel` follow it. A per-user daemon on the login node (started on
    first use) holds the job records.
    """


for command in (run, status, logs, cancel, resize, rebalance, cron, simulate, report, model, sweep, daemon):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="hpcsched")
