"""Tables and plots of simulation results (plots need matplotlib; the Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .metrics import SimulationResult

COLUMNS = (
    ("policy", "policy", "{}"),
    ("restart_cost", "restart", "{}"),
    ("avg_jct", "avg JCT (s)", "{:,.0f}"),
    ("p99_jct", "p99 JCT (s)", "{:,.0f}"),
    ("makespan", "makespan (s)", "{:,.0f}"),
    ("utilisation", "GPU util.", "{:.1%}"),
    ("restarts", "restarts", "{}"),
    ("restarts_per_job", "restarts/job", "{:.2f}"),
    ("restart_time_fraction", "restart time", "{:.1%}"),
    ("worst_ftf", "worst FTF", "{:.2f}"),
)


def table(results: Sequence[SimulationResult]) -> str:
    """A Markdown table, one row per run."""
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + "|"
    rows = []
    for result in results:
        metrics = result.metrics()
        rows.append("| " + " | ".join(fmt.format(metrics[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join([head, rule, *rows]) + "\n"


def plot(results: Sequence[SimulationResult], directory: Path, prefix: str = "simulation") -> list[Path]:
    """``<prefix>_jct_cdf.png`` (distribution of completion times) and
    ``<prefix>_utilisation.png`` (allocated GPUs over time, 10-minute averages)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{prefix}_jct_cdf.png", directory / f"{prefix}_utilisation.png"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        jcts = np.sort(result.jcts)
        axes.step(jcts, np.arange(1, len(jcts) + 1) / len(jcts), where="post", label=_label(result))
    axes.set(xscale="log", xlabel="job completion time (s)", ylabel="fraction of jobs", title="JCT distribution")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(paths[0], dpi=120)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        hours, share = _smoothed_usage(result)
        axes.plot(hours, share, label=_label(result), linewidth=1.2)
    axes.set(xlabel="time (h)", ylabel="GPUs allocated (share)", ylim=(0, 1.05), title="Cluster utilisation")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(paths[1], dpi=120)
    plt.close(figure)
    return paths


def _label(result: SimulationResult) -> str:
    return f"{result.policy} ({result.restart_cost})"


def _smoothed_usage(result: SimulationResult, window_s: float = 600.0) -> tuple[np.ndarray, np.ndarray]:
    if not result.usage:
        return np.zeros(1), np.zeros(1)
    times = np.array([t for t, _ in result.usage])
    used = np.array([u for _, u in result.usage], dtype=np.float64) / result.total_gpus
    edges = np.arange(0.0, times.max() + window_s, window_s)
    index = np.digitize(times, edges) - 1
    sums = np.bincount(index, weights=used, minlength=len(edges))
    counts = np.bincount(index, minlength=len(edges))
    keep = counts > 0
    return edges[keep] / 3600.0, sums[keep] / counts[keep]
