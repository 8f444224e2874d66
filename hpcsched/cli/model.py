"""``hpcsched model``: a job's fitted throughput and goodput model, from its own step times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from hpcsched.cli.common import CliError, print_json, reports_errors, settings, table_console
from hpcsched.daemon import client
from hpcsched.errors import ValidationError
from hpcsched.jobs.fitted import ModelReport, NotMeasured, model_report
from hpcsched.jobs.measured import measure
from hpcsched.planning.fields import MAX_NODES, format_count, parse_nodes
from hpcsched.report.gather import read_progress

HELP = {"help_option_names": ["-h", "--help"]}
DEFAULT_MAX_NODES = 8
PARAMETERS = (
    ("alpha_c", "ms", "compute per micro-step, fixed part"),
    ("beta_c", "ms/sample", "compute per sample of the local batch"),
    ("alpha_r", "ms", "all-reduce inside one node, fixed part"),
    ("beta_r", "ms/replica", "all-reduce inside one node, per replica beyond two"),
    ("alpha_n", "ms", "all-reduce across nodes, fixed part"),
    ("beta_n", "ms/replica", "all-reduce across nodes, per replica beyond two"),
    ("gamma", "", "overlap of compute and all-reduce (1: none; large: full)"),
    ("kappa", "", "bend of compute in the batch (1: straight line; large: flat, then linear)"),
)
EXAMPLES = """\b
Examples:
  hpcsched model 12                      # parameters, fit, predictions up to the job's --nodes maximum
  hpcsched model 12 --max-nodes 16       # predict up to 16 nodes
  hpcsched model 12 --json | jq '.predictions[] | [.num_nodes, .speedup]'
  hpcsched model 12 --plot bert-model.png
"""


@click.command(context_settings=HELP, epilog=EXAMPLES)
@click.argument("job", type=int)
@click.option(
    "--max-nodes",
    type=click.IntRange(1, MAX_NODES),
    default=None,
    help="Predict for 1 to this many nodes [default: the maximum of the job's --nodes, or 8].",
)
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object (times in seconds).")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a PNG: step time measured vs predicted, and predicted speedup per node count.",
)
@reports_errors
def model(job: int, max_nodes: int | None, as_json: bool, plot_path: Path | None) -> None:
    """Show the throughput and goodput model hpcsched fitted to JOB's measured step times.

    The job's progress lines (written by the runtime library) give the mean step time of every
    batch configuration it ran with: nodes, ranks, samples per rank (LOCAL) and extra
    gradient-accumulation micro-steps (ACCUM). The step-time model of docs/models.md is fitted
    to them; its constants are shown with units, then each configuration's measured step time
    beside the model's prediction and the error.

    For every node count up to --max-nodes (with as many ranks per node as the job runs now)
    the model then predicts the batch configuration with the highest goodput (samples per
    second, weighted by statistical efficiency) within the job's batch limits, and its speedup
    over one GPU. `hpcsched rebalance` sizes the job from the same measurements, with each node
    as one replica. The last line gives the gradient noise scale and the statistical efficiency
    at the current batch, when the job reports its gradient noise.

    A job that has not reported a step time yet is an error (exit status 1). With one
    configuration measured, the fit leans on its prior for what the data cannot tell.
    """
    if plot_path is not None:
        check_plot_path(plot_path)
    cfg = settings()
    client.ensure_daemon(cfg)
    info = client.call(cfg, "status", {"job": job})[0]
    nodes_by_attempt = {int(a["number"]): int(a["nodes"]) for a in info.get("attempts") or () if a.get("nodes")}
    measurements = measure(read_progress(str(info.get("job_dir") or "")), nodes_by_attempt)
    try:
        result = model_report(measurements, max_nodes or default_max_nodes(info))
    except NotMeasured as e:
        raise CliError(f"job {job}: {e}") from None
    if as_json:
        print_json({"job": info["id"], "name": info["name"], **result.as_dict()})
    else:
        print_report(info, result)
    if plot_path is not None:
        from hpcsched.cli.model_plot import write_model_plot  # matplotlib only when asked for

        write_model_plot(result, plot_path, f"job {info['id']} ({info['name']})")
        click.echo(f"wrote {plot_path}", err=True)


def check_plot_path(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise ValidationError("--plot", f"{path} does not end in .png; the plot is a PNG file")
    if not path.parent.resolve().is_dir():
        raise ValidationError("--plot", f"the directory {path.parent} does not exist")


def default_max_nodes(info: dict[str, Any]) -> int:
    """The maximum of the job's --nodes (its elastic range, or its fixed count), else 8."""
    nodes = (info.get("request") or {}).get("nodes")
    return parse_nodes(str(nodes)).max if nodes else DEFAULT_MAX_NODES


def print_report(info: dict[str, Any], result: ModelReport) -> None:
    console = table_console()
    steps = sum(f.measured.timed_steps for f in result.fits)
    console.print(
        f"Job {info['id']} ({info['name']}): step-time model fitted to {len(result.fits)} "
        f"configuration{'s' if len(result.fits) != 1 else ''} ({steps:,} timed steps).",
        highlight=False,
    )
    console.print("\nParameters", style="bold")
    console.print(parameter_table(result))
    console.print("\nMeasured vs predicted step time", style="bold")
    console.print(fit_table(result))
    console.print(
        f"\nPredicted best configuration per node count ({format_count(result.procs_per_node, 'rank')} per node; "
        f"{limits_text(result)})",
        style="bold",
        highlight=False,
    )
    console.print(prediction_table(result))
    console.print("\n" + noise_text(result), highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, justify="left" if column == "NOTE" else "right")
    return table


def parameter_table(result: ModelReport) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    for _ in range(3):
        table.add_column()
    for name, unit, meaning in PARAMETERS:
        value = getattr(result.params, name)
        table.add_row(name, f"{value:.4g}" if not unit else f"{1000 * value:.4g} {unit}", meaning)
    return table


def fit_table(result: ModelReport) -> Table:
    table = _table("NODES", "RANKS", "LOCAL", "ACCUM", "GLOBAL", "TIMED STEPS", "MEASURED", "PREDICTED", "ERROR")
    for f in result.fits:
        c = f.measured.config
        table.add_row(
            str(c.num_nodes),
            str(c.num_replicas),
            str(c.local_bsz),
            str(c.accum_steps),
            str(c.global_bsz),
            f"{f.measured.timed_steps:,}",
            milliseconds(f.measured.step_time),
            milliseconds(f.predicted_step_time),
            f"{f.error_pct:+.1f}%",
        )
    return table


def prediction_table(result: ModelReport) -> Table:
    table = _table("NODES", "RANKS", "SPEEDUP", "GLOBAL", "LOCAL", "ACCUM", "STEP TIME", "SAMPLES/S", "EFFICIENCY", "NOTE")
    for p in result.predictions:
        now = "now" if p.num_nodes == result.current.num_nodes else ""
        if p.best is None or p.step_time is None:
            table.add_row(str(p.num_nodes), str(p.num_replicas), *["-"] * 7, "no batch within the limits fits")
            continue
        b = p.best
        speedup = "-" if p.speedup is None else f"{p.speedup:.2f}x"
        table.add_row(
            str(p.num_nodes),
            str(p.num_replicas),
            speedup,
            str(b.global_bsz),
            str(b.local_bsz),
            str(b.accum_steps),
            milliseconds(p.step_time),
            f"{b.throughput:,.0f}",
            f"{b.efficiency:.3f}",
            now,
        )
    return table


def limits_text(result: ModelReport) -> str:
    lim = result.limits
    batch = (
        f"global batch {lim.min_global_bsz}"
        if lim.min_global_bsz == lim.max_global_bsz
        else f"global batch {lim.min_global_bsz}-{lim.max_global_bsz}"
    )
    return f"{batch}, local batch <= {lim.max_local_bsz}, accumulation <= {lim.max_accum_steps}"


def noise_text(result: ModelReport) -> str:
    batch, base = result.current.global_bsz, result.limits.min_global_bsz
    if result.efficiency is None:
        return (
            f"Gradient noise: not reported; efficiency unknown (taken as M0/M = {base}/{batch} "
            f"= {base / batch:.3f} at the current global batch)."
        )
    scale = "unbounded" if result.noise_scale is None else f"{result.noise_scale:,.0f} samples"
    return (
        f"Gradient noise: scale {scale}; statistical efficiency {result.efficiency:.3f} at the current "
        f"global batch {batch} (M0 = {base})."
    )


def milliseconds(seconds: float) -> str:
    return f"{1000 * seconds:.4g} ms"
