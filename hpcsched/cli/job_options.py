"""The options that describe one job, shared by ``hpcsched run`` and ``hpcsched sweep run``.

:func:`job_options` adds SCRIPT, the script's arguments and every resource and placement option to
a command, which receives them as one :class:`JobOptions`; :meth:`JobOptions.request` turns them
into a validated :class:`~hpcsched.planning.request.JobRequest`. The job name, ``--dry-run``,
``--json`` and ``--follow`` mean different things to the two commands and stay with each.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from hpcsched.config import Settings
from hpcsched.planning import fields, preflight
from hpcsched.planning.request import JobRequest


@dataclass(frozen=True)
class JobOptions:
    """The job's options as typed (paths relative to the current directory)."""

    script: str
    script_args: tuple[str, ...]
    nodes: str
    start_nodes: int | None
    max_failures: int
    hang_timeout: int
    gpus_per_node: str
    procs_per_node: int | None
    cpus_per_node: int
    mem: str | None
    time: str | None
    partition: str | None
    account: str | None
    qos: str | None
    constraint: str | None
    reservation: str | None
    exclusive: bool
    image: str | None
    env: tuple[str, ...]
    workdir: str | None
    sbatch: tuple[str, ...]

    def request(self, cfg: Settings, name: str | None, script_args: Sequence[str] | None = None) -> JobRequest:
        """The validated request of a job named ``name`` (None: from the script's file name) that
        passes ``script_args`` (default: the arguments given after ``--``) to the script."""
        options = dataclasses.asdict(self)
        options.update(
            script=os.path.abspath(self.script),
            workdir=os.path.abspath(self.workdir or os.getcwd()),
            script_args=list(self.script_args if script_args is None else script_args),
            image=self.image or cfg.image,
            partition=self.partition or cfg.partition or None,
            account=self.account or cfg.account or None,
            qos=self.qos or cfg.qos or None,
            time=self.time or cfg.time or None,
            mem=self.mem or cfg.memory or None,
            mem_per_cpu=self.default_mem_per_cpu(cfg),
            env=list(self.env),
            sbatch=list(self.sbatch),
            name=name,
        )
        return JobRequest.from_options(options)


    def default_mem_per_cpu(self, cfg: Settings) -> str | None:
        """Without a memory request Slurm gives a job all of each node's memory, so no other job
        can share its nodes: a fixed-size job asks for the mem_per_cpu setting per CPU instead.
        An elastic job keeps its nodes to itself (hpcsched sizes and measures it in whole nodes)."""
        if self.mem or cfg.memory or fields.parse_nodes(self.nodes).elastic:
            return None
        return cfg.mem_per_cpu or None


def check_files(request: JobRequest) -> None:
    """The work directory and the script, as the user sees them (reads the file system)."""
    preflight.check_job_files(request.workdir, request.script)


_DECORATORS: tuple[Callable[[Any], Any], ...] = (
    click.argument("script"),
    click.argument("script_args", nargs=-1, type=click.UNPROCESSED),
    click.option("--nodes", "-N", default="1", show_default=True, help="Node count N, or a range MIN-MAX for an elastic job."),
    click.option(
        "--start-nodes",
        type=int,
        default=None,
        help="For an elastic job: the node count to start with [default: as many of MIN-MAX as Slurm gives].",
    ),
    click.option(
        "--max-failures", type=int, default=3, show_default=True, help="Node failures after which the job is not requeued again."
    ),
    click.option(
        "--hang-timeout", type=int, default=600, show_default=True, metavar="SECONDS",
        help="Elastic jobs: seconds without a progress line after which the attempt is ended as hung and the job "
        "requeued, counted as a failure (0: never).",
    ),
    click.option("--gpus-per-node", default="0", show_default=True, metavar="[TYPE:]COUNT",
                 help="GPUs per node (0 for CPU training), optionally of one type, e.g. a100:4."),
    click.option(
        "--procs-per-node",
        default=None,
        type=int,
        help="Training processes per node [default: GPUs per node, or 1 without GPUs].",
    ),
    click.option("--cpus-per-node", default=1, show_default=True, help="CPU cores per node."),
    click.option("--mem", default=None,
                 help="Memory per node, e.g. 4000M or 16G; 0: all of each node's memory [default: the memory "
                 "setting, else mem_per_cpu per CPU]."),
    click.option("--time", "time", default=None,
                 help="Time limit: M, H:M:S, D-H:M:S [default: the time setting, else the partition's]."),
    click.option("--partition", "-p", default=None,
                 help="Slurm partition, or several: gpu,gpu-long [default: the partition setting, else Slurm's]."),
    click.option("--account", "-A", default=None, help="Slurm account to charge [default: the account setting, else yours]."),
    click.option("--qos", default=None, help="Slurm quality of service [default: the qos setting]."),
    click.option("--constraint", "-C", default=None, metavar="FEATURES",
                 help="Node features joined by & (all) or | (any), e.g. 'a100|h100' or '(a100|h100)&ib'."),
    click.option("--reservation", default=None, help="Run in this Slurm reservation."),
    click.option("--exclusive", is_flag=True, default=False, help="Take whole nodes: share them with no other job."),
    click.option("--image", default=None, help="Container image [default: the image setting, else the hpcsched training image]."),
    click.option("--env", "-e", multiple=True, metavar="KEY=VALUE", help="Environment variable for the script (repeatable)."),
    click.option(
        "--workdir",
        "-D",
        default=None,
        type=click.Path(file_okay=False),
        help="Directory mounted into the container and used as the working directory [default: current].",
    ),
    click.option(
        "--sbatch",
        "sbatch",
        multiple=True,
        metavar="--OPTION[=VALUE]",
        help="Extra sbatch directive, e.g. --sbatch=--mail-type=END (repeatable).",
    ),
)
_NAMES = tuple(f.name for f in dataclasses.fields(JobOptions))


def job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add SCRIPT, its arguments and the job options to a click command (put it right below
    ``@click.command``); the command gets them as one keyword argument ``job: JobOptions``."""

    @functools.wraps(command)
    def with_job(*args: Any, **kwargs: Any) -> Any:
        job = JobOptions(**{name: kwargs.pop(name) for name in _NAMES})
        return command(*args, job=job, **kwargs)

    decorated: Callable[..., Any] = with_job
    for decorate in reversed(_DECORATORS):
        decorated = decorate(decorated)
    return decorated
