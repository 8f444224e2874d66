"""How close the faithful Pollux baseline comes to the study's own results, workload by load.

    nice -n 10 .venv/bin/python benchmarks/pollux_fidelity.py [--load 1.0]... [--workload 1]...
        [--policy pollux-faithful] [--jobs 2] [--fresh]

Replays each Pollux workload at each load of the study (0.5x, 1.0x, 1.5x, 2.0x: 8 x 4 cells) on
16 nodes x 4 GPUs with a fixed 30 s restart and a decision every 60 s (the study's settings),
seed 0, and compares each average job completion time with the one published for Pollux
(``hpcsched/data/pollux/published.md``, from the artifact's result files): ratio, and whether it
is within +-5%. ``--load`` and ``--workload`` run a subsample; each finished cell is merged into
benchmarks/results/pollux_fidelity.{json,md} at once (``--fresh`` starts them over), and the md
says which cells were run. A 1.0x cell takes about 2.5 minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from collections.abc import Iterable
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from hpcsched.allocator import Cluster
from hpcsched.simulator import RestartModel, read_workload, simulate
from hpcsched.simulator.data import data_dir

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "pollux_fidelity"
LOADS = {"0.5": "workloads-0.5", "1.0": "workloads", "1.5": "workloads-1.5", "2.0": "workloads-2.0"}
WORKLOADS = tuple(range(1, 9))
TOLERANCE = 0.05
Cell = tuple[str, int]  # (load, workload)


def published(root: Path) -> dict[Cell, float]:
    """Pollux's average JCT per (load, workload) from the table in ``published.md``."""
    cells: dict[Cell, float] = {}
    for line in (root / "published.md").read_text().splitlines():
        match = re.match(r"\|\s*pollux-(\d\.\d)\s*\|(.*)\|\s*$", line)
        if match:
            values = [float(v) for v in match.group(2).split("|")][: len(WORKLOADS)]
            cells |= {(match.group(1), w): v for w, v in zip(WORKLOADS, values, strict=True)}
    return cells


def run(item: tuple[str, Cell]) -> tuple[Cell, dict[str, Any]]:
    policy, (load, workload) = item
    jobs = read_workload(data_dir() / LOADS[load] / f"workload-{workload}.csv")
    start = time.perf_counter()
    result = simulate(jobs, policy, Cluster(16, 4), RestartModel.parse("30"))
    metrics = result.metrics()
    return (load, workload), {
        "avg_jct": float(metrics["avg_jct"]),
        "restarts_per_job": float(metrics["restarts"]) / len(jobs),
        "jobs": len(jobs),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def _key(cell: Cell) -> str:
    return f"{cell[0]}/workload-{cell[1]}"


def load_previous(policy: str) -> dict[str, Any]:
    path = RESULTS / f"{NAME}.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return dict(data.get("cells", {})) if data.get("policy") == policy else {}


def row(cell: Cell, reference: float, simulated: dict[str, Any] | None) -> dict[str, Any]:
    if simulated is None:
        return {"published": reference}
    ratio = simulated["avg_jct"] / reference
    return {"published": reference, **simulated, "ratio": ratio, "within": abs(ratio - 1.0) <= TOLERANCE}


def table(policy: str, rows: dict[str, dict[str, Any]]) -> str:
    ran = [key for key, r in rows.items() if "ratio" in r]
    within = [key for key in ran if rows[key]["within"]]
    lines = [
        f"# Faithful Pollux ({policy}) against the study's published average JCT",
        "",
        "16 nodes x 4 GPUs, 30 s restart, 60 s rounds, seed 0; published: Pollux's own results "
        "(hpcsched/data/pollux/published.md). Regenerate: `nice -n 10 .venv/bin/python benchmarks/pollux_fidelity.py`.",
        "",
        f"Cells run: {len(ran)} of {len(rows)} ({', '.join(ran) or 'none'}); "
        f"within +-{TOLERANCE:.0%}: {len(within)} of {len(ran)}.",
        "",
        "| load | workload | published s | simulated s | ratio | within +-5% | restarts/job |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for key, r in rows.items():
        load, workload = key.split("/")
        if "ratio" in r:
            verdict = "yes" if r["within"] else "**no**"
            lines.append(f"| {load} | {workload} | {r['published']:,.0f} | {r['avg_jct']:,.0f} | {r['ratio']:.3f} | {verdict} | "
                         f"{r['restarts_per_job']:.2f} |")
        else:
            lines.append(f"| {load} | {workload} | {r['published']:,.0f} | not run | | | |")
    for load in LOADS:
        ratios = [rows[k]["ratio"] for k in ran if k.startswith(f"{load}/")]
        if ratios:
            lines.append(f"\nLoad {load}: mean ratio {statistics.fmean(ratios):.3f} over {len(ratios)} workload(s).")
    return "\n".join(lines) + "\n"


def write(policy: str, reference: dict[Cell, float], done: dict[str, Any]) -> str:
    rows = {_key(cell): row(cell, value, done.get(_key(cell))) for cell, value in sorted(reference.items())}
    data = {"policy": policy, "cells": done, "rows": rows, "python": platform.python_version()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    text = table(policy, rows)
    (RESULTS / f"{NAME}.md").write_text(text)
    return text


def cells(loads: Iterable[str], workloads: Iterable[int]) -> list[Cell]:
    return [(load, w) for load in loads for w in workloads]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", action="append", choices=sorted(LOADS), help="keep only this load (repeatable)")
    parser.add_argument("--workload", action="append", type=int, choices=WORKLOADS, help="keep only this workload")
    parser.add_argument("--policy", default="pollux-faithful")
    parser.add_argument("--jobs", type=int, default=1, help="simulations run at once")
    parser.add_argument("--fresh", action="store_true", help="forget the cells of earlier runs")
    args = parser.parse_args()
    reference = published(data_dir())
    if args.fresh:
        write(args.policy, reference, {})
    todo = [(args.policy, cell) for cell in cells(args.load or LOADS, args.workload or WORKLOADS)]
    with Pool(max(1, args.jobs)) as pool:
        for cell, simulated in pool.imap_unordered(run, todo):
            print(f"{_key(cell)}: {simulated['avg_jct']:,.0f} s (published {reference[cell]:,.0f}) in {simulated['wall_s']} s",
                  flush=True)
            # merged with what is on disk now: several subsamples may run at once
            write(args.policy, reference, load_previous(args.policy) | {_key(cell): simulated})
    print(write(args.policy, reference, load_previous(args.policy)))


if __name__ == "__main__":
    main()
