"""Plots of a report (matplotlib's Agg canvas, PNG): the allocation timeline, the queue-wait
distribution, and useful vs lost node-hours per user. Values that are unknown are not drawn; a
plot that has nothing to draw says why instead."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hpcsched.report.values import Report, Totals
from hpcsched.slurm.hostlist import expand

FILES = ("allocation-timeline.png", "queue-wait.png", "useful-vs-lost.png")
COLOURS = matplotlib.colormaps["tab20"]


def write_plots(report: Report, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / name for name in FILES]
    for draw, path in zip((allocation_timeline, queue_waits, useful_vs_lost), paths, strict=True):
        figure = Figure(figsize=(9, 5))
        FigureCanvasAgg(figure)  # the Agg canvas, without pyplot's global state
        draw(report, figure.add_subplot())
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    return paths


def allocation_timeline(report: Report, ax: Axes) -> None:
    """Each run is a bar on every node it held; one colour per job, a label per attempt."""
    bars = [(job.id, row.number, u) for job in report.jobs for row in job.attempts
            if (u := row.usage) is not None and u.start_time is not None]
    if not bars:
        _nothing(ax, "Allocation timeline", _why_empty(report, "no run started"))
        return
    origin = min(u.start_time for _, _, u in bars if u.start_time is not None)
    last = max(u.end_time if u.end_time is not None else report.now for _, _, u in bars)
    unit, scale = ("hours", 3600.0) if last - origin > 7200 else ("minutes", 60.0)
    nodes = sorted({n for _, _, u in bars for n in expand(u.node_list)}, key=_natural)
    row_of = {n: i for i, n in enumerate(nodes)}
    for job_id, number, u in bars:
        assert u.start_time is not None
        start = (u.start_time - origin) / scale
        width = ((u.end_time if u.end_time is not None else report.now) - u.start_time) / scale
        colour = COLOURS(job_id % COLOURS.N)
        for node in expand(u.node_list):
            ax.broken_barh([(start, width)], (row_of[node] - 0.4, 0.8), facecolors=colour, edgecolor="black", linewidth=0.6)
        if len(bars) <= 60:
            label = f"{job_id}" + (f"#{number}" if number is not None else "")
            ax.text(start + width / 2, row_of[expand(u.node_list)[0]], label, ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set(xlabel=f"{unit} since {_local(origin)}", title="Allocation timeline (job#attempt per run)")
    ax.grid(True, axis="x", alpha=0.3)


def queue_waits(report: Report, ax: Axes) -> None:
    waits = [u.queue_wait / 60.0 for job in report.jobs for row in job.attempts
             if (u := row.usage) is not None and u.queue_wait is not None]
    if not waits:
        _nothing(ax, "Queue wait per run", _why_empty(report, "no run"))
        return
    ax.hist(waits, bins=min(30, max(5, len(waits) // 3)), color="tab:blue", edgecolor="white")
    ax.set(xlabel="minutes from submit to start", ylabel="runs", title=f"Queue wait per run ({len(waits)} runs)")
    ax.grid(True, axis="y", alpha=0.3)


def useful_vs_lost(report: Report, ax: Axes) -> None:
    """Stacked per user: useful, lost (allocated to progress-reporting jobs, not kept), and
    allocated to jobs that report no progress."""
    users: Sequence[Totals] = report.users
    known = [t for t in users if t.node_hours is not None and t.measured_node_hours is not None
             and t.useful_node_hours is not None]
    if not known:
        _nothing(ax, "Useful vs lost node-hours", _why_empty(report, "no jobs"))
        return
    names = [t.name for t in known]
    useful = [t.useful_node_hours or 0.0 for t in known]
    lost = [t.lost_node_hours or 0.0 for t in known]
    other = [max(0.0, (t.node_hours or 0.0) - (t.measured_node_hours or 0.0)) for t in known]
    ax.bar(names, useful, color="tab:green", label="useful (kept steps)")
    ax.bar(names, lost, bottom=useful, color="tab:red", label="lost (redone, restarts, idle)")
    ax.bar(names, other, bottom=[u + x for u, x in zip(useful, lost, strict=True)], color="lightgrey",
           label="no progress reported")
    ax.set(ylabel="node-hours", title="Useful vs lost node-hours per user")
    ax.legend(fontsize="small")
    skipped = len(users) - len(known)
    if skipped:
        ax.annotate(f"{skipped} user(s) not shown: node-hours unknown", (0.01, 0.97), xycoords="axes fraction",
                    va="top", fontsize=8)


def _nothing(ax: Axes, title: str, why: str) -> None:
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)


def _why_empty(report: Report, default: str) -> str:
    if report.accounting_error is not None:
        return "Slurm accounting could not be read:\n" + report.accounting_error
    return default


def _natural(name: str) -> tuple[str, int]:
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return head, int(tail) if tail else -1


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")
