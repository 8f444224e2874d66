"""The ``hpcsched`` command group.

Each command's module is imported when that command runs, not at start-up: ``status`` or ``logs``
must not pay for the plotting and fitting libraries that ``model``, ``report`` and ``simulate``
use (about 0.8 s of imports on a login node).
"""

from __future__ import annotations

import importlib

import click

from hpcsched import __version__

# command name -> "module:attribute", in the order ``--help`` lists them
COMMANDS = {
    "run": "hpcsched.cli.run:run",
    "status": "hpcsched.cli.jobs:status",
    "logs": "hpcsched.cli.jobs:logs",
    "events": "hpcsched.cli.jobs:events",
    "cancel": "hpcsched.cli.jobs:cancel",
    "resize": "hpcsched.cli.jobs:resize",
    "rebalance": "hpcsched.cli.cluster:rebalance",
    "cron": "hpcsched.cli.cluster:cron",
    "simulate": "hpcsched.cli.simulate:simulate",
    "report": "hpcsched.cli.report:report",
    "model": "hpcsched.cli.model:model",
    "sweep": "hpcsched.cli.sweep:sweep",
    "daemon": "hpcsched.cli.daemon:daemon",
    "site": "hpcsched.cli.site:site",
    "config": "hpcsched.cli.config:config",
    "doctor": "hpcsched.cli.doctor:doctor",
    "image": "hpcsched.cli.image:image",
    "completion": "hpcsched.cli.completion:completion",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpcsched")
def cli() -> None:
    """hpcsched: run PyTorch training on Slurm in rootless containers under torchrun.

    `hpcsched run train.py` writes the Slurm batch script, submits it, and keeps track of the
    job; `status`, `logs` and `cancel` follow it. A per-user daemon on the login node (started on
    first use) holds the job records.
    """


def main() -> None:
    cli(prog_name="hpcsched")
