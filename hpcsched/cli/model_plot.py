"""The plot of ``hpcsched model --plot`` (matplotlib's Agg canvas, PNG), drawn the way the
report's plots are: left, step time per configuration, measured and predicted, with the model's
curve over the local batch; right, the predicted speedup per node count."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hpcsched.jobs.fitted import ConfigurationFit, ModelReport
from hpcsched.models import predict_step_time
from hpcsched.planning.fields import format_count

COLOURS = matplotlib.colormaps["tab10"]


def write_model_plot(report: ModelReport, path: Path, title: str) -> None:
    figure = Figure(figsize=(13, 5))
    FigureCanvasAgg(figure)  # the Agg canvas, without pyplot's global state
    left, right = figure.subplots(1, 2)
    step_times(report, left)
    speedups(report, right)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")


def step_times(report: ModelReport, ax: Axes) -> None:
    """Per (nodes, ranks, accumulation) seen: measured (filled) and predicted (cross) step times,
    and the model's step time over the local batch as a line."""
    groups: dict[tuple[int, int, int], list[ConfigurationFit]] = {}
    for f in report.fits:
        c = f.measured.config
        groups.setdefault((c.num_nodes, c.num_replicas, c.accum_steps), []).append(f)
    top = max(2.0, 1.5 * max(f.measured.config.local_bsz for f in report.fits))
    local = np.linspace(1.0, top, 200)
    for i, ((nodes, ranks, accum), fits) in enumerate(sorted(groups.items())):
        colour = COLOURS(i % COLOURS.N)
        label = f"{nodes} node{'s' if nodes > 1 else ''} x {ranks} rank{'s' if ranks > 1 else ''}"
        label += f", {accum} extra micro-step{'s' if accum > 1 else ''}" if accum else ""
        ax.plot(local, predict_step_time(report.params, nodes, ranks, local, accum), color=colour, label=label)
        batches = [f.measured.config.local_bsz for f in fits]
        ax.scatter(batches, [f.measured.step_time for f in fits], color=colour, marker="o", zorder=3)
        ax.scatter(batches, [f.predicted_step_time for f in fits], color="black", marker="x", zorder=4)
    ax.scatter([], [], color="grey", marker="o", label="measured")
    ax.scatter([], [], color="black", marker="x", label="predicted")
    ax.set(
        xlabel="local batch (samples per rank per micro-step)",
        ylabel="seconds per optimizer step",
        title="Step time: measured vs model",
        xlim=(0, top),
        ylim=(0, None),
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def speedups(report: ModelReport, ax: Axes) -> None:
    """Predicted speedup over one GPU at the best batch configuration of each node count; node
    counts where no batch fits the limits are left out."""
    points = [(p.num_nodes, p.speedup) for p in report.predictions if p.speedup is not None and p.best is not None]
    if not points:
        ax.set_axis_off()
        ax.set_title("Predicted speedup")
        ax.text(
            0.5,
            0.5,
            "no speedup over one GPU: the job does not fit on one GPU,\nor no batch fits its limits at any size",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return
    nodes, values = zip(*points, strict=True)
    ax.plot(nodes, values, marker="o", color="tab:blue", label="predicted, best batch per size")
    measured = sorted({f.measured.config.num_nodes for f in report.fits})
    ax.scatter(
        measured,
        [dict(points).get(n, np.nan) for n in measured],
        s=120,
        facecolors="none",
        edgecolors="tab:red",
        zorder=3,
        label="node counts measured",
    )
    ax.set(
        xlabel=f"nodes ({format_count(report.procs_per_node, 'rank')} each)",
        ylabel="speedup over one GPU (goodput ratio)",
        title="Predicted speedup",
        ylim=(0, None),
    )
    if len(nodes) <= 20:
        ax.set_xticks(list(nodes))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
