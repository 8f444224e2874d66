"""``hpcsched simulate``: replay a workload on a simulated cluster under several policies.

Thin: parse the options, call :func:`hpcsched.simulator.simulate` once per policy, print a table
(or JSON) and optionally write plots. Everything runs on simulated time, so a run of the Pollux
workloads takes seconds, not hours.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from hpcsched.allocator import Cluster
from hpcsched.cli.common import CliError, InvalidInput
from hpcsched.simulator import POLICY_NAMES, RestartModel, SimulationResult, WorkloadError, read_workload
from hpcsched.simulator import simulate as run_simulation
from hpcsched.simulator.data import data_dir, default_applications, resolve_workload
from hpcsched.simulator.owners import assign_owners
from hpcsched.simulator.policies import FACTORIES
from hpcsched.simulator.report import plot, table


def _restart_cost(text: str) -> RestartModel:
    try:
        return RestartModel.parse(text)
    except ValueError as e:
        raise InvalidInput(f"--restart-cost: {e}") from None


def _run_all(workload_spec: str, policies: Sequence[str], cluster: Cluster, cost: RestartModel,
             seed: int, data: Path, owners: tuple[int, float] | None, on_arrival: bool = False) -> list[SimulationResult]:
    try:
        applications = default_applications(data)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None
    try:
        workload = read_workload(resolve_workload(workload_spec, data), list(applications))
    except WorkloadError as e:
        raise InvalidInput(str(e)) from None
    if owners is not None:
        workload = assign_owners(workload, owners[0], owners[1], seed)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} jobs"))
    results = []
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as bar:
        for name in policies:
            task = bar.add_task(name, total=len(workload))

            def advance(_now: float, done: int, _total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done)

            results.append(run_simulation(workload, name, cluster, cost, seed=seed, applications=applications, progress=advance,
                                          on_arrival=on_arrival))
    return results


@click.command("simulate")
@click.option("--workload", "workload_spec", required=True, metavar="NAME|PATH",
              help="A workload shipped with hpcsched by name (workload-1 ... workload-8 at 1.0x load, "
                   "workloads-0.5/workload-1 and the like for 0.5x/1.5x/2.0x, philly for the Philly trace), "
                   "or the path of a workload CSV or Philly trace file.")
@click.option("--policy", "policies", multiple=True, type=click.Choice(tuple(FACTORIES)),
              help="Policy to compare; repeat for several (default: all but site, the -oracle bounds and "
                   "hpcsched-nostop).")
@click.option("--restart-cost", default="30", show_default=True, help="Seconds per re-allocation, or 'slurm'.")
@click.option("--nodes", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--gpus-per-node", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the random restart waits (and of --users/--rigid-share's assignment).")
@click.option("--users", type=click.IntRange(min=1), default=None,
              help="Assign each job to one of N users (seeded draw); the allocator is fair between users.")
@click.option("--rigid-share", type=click.FloatRange(0.0, 1.0), default=None,
              help="Make this share of the jobs (seeded draw) plain Slurm jobs, never resized; "
                   "the site policy runs them FIFO with backfill and sizes the rest.")
@click.option("--plot", "plot_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Write simulation_jct_cdf.png and simulation_utilisation.png here.")
@click.option("--timing", type=click.Choice(("rounds", "arrival")), default="rounds", show_default=True,
              help="When every policy decides: in 60 s rounds only (as Pollux's simulator), or also when a job "
                   "arrives or ends (as Slurm's scheduler and hpcsched's daemon act).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per policy.")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Pollux data directory with traces/ and the workloads named by --workload "
                   "(default: $HPCSCHED_POLLUX_DATA, else the copy shipped with hpcsched).")
def simulate(workload_spec: str, policies: tuple[str, ...], restart_cost: str, nodes: int, gpus_per_node: int,
             seed: int, users: int | None, rigid_share: float | None, plot_dir: Path | None, timing: str,
             as_json: bool, data: Path | None) -> None:
    """Replay a workload under scheduling policies on simulated time and compare them.

    Policies: static (submitted sizes, FIFO with backfill, tuned configurations), static-realistic
    (the same with user-style configurations), tiresias, pollux (elastic, restart-cost blind) and
    hpcsched (elastic, restart-cost aware); site (rigid jobs of --rigid-share through Slurm, the
    rest elastic in what they leave, never delaying a rigid job; docs/fairness.md). The -oracle
    variants (pollux-oracle, hpcsched-oracle, site-oracle) are told the true step-time models and
    remaining work: labelled upper bounds, never a baseline. hpcsched-nostop is hpcsched as the
    daemon acts on a real cluster: it never stops a running job (the simulated hpcsched does where
    its allocator says so).

    Every policy gets the same timing: 60 s rounds by default; --timing arrival also decides when a
    job arrives or ends (docs/simulator.md).
    """
    cost = _restart_cost(restart_cost)
    chosen = list(dict.fromkeys(policies)) or list(POLICY_NAMES)
    owners = None if users is None and rigid_share is None else (users or 1, rigid_share or 0.0)
    results = _run_all(workload_spec, chosen, Cluster(nodes, gpus_per_node), cost, seed, data or data_dir(), owners,
                       on_arrival=timing == "arrival")
    if plot_dir is not None:
        for path in plot(results, plot_dir):
            click.echo(f"wrote {path}", err=True)
    if as_json:
        click.echo(json.dumps([r.metrics() for r in results], indent=2))
    else:
        click.echo(table(results), nl=False)
