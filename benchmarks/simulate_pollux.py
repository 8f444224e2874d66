"""Replay the Pollux workloads under every policy and compare with the study's figures.

    .venv/bin/python benchmarks/simulate_pollux.py [--data /work/shared/data/pollux] [--jobs 2]

Runs, all on 16 nodes x 4 GPUs with a decision every 60 s, seed 0:

* the eight 1.0x workloads under static, static-realistic, tiresias, pollux and hpcsched, with a
  fixed 30 s restart cost (the study's setting) and with the slurm-realistic cost;
* the eight 2.0x workloads (``workloads-2.0``) under hpcsched and pollux with 30 s.

Average JCT per policy is the mean over the workloads of each workload's average JCT (as the
study's ``summary.json`` computes it). Published (Qiao et al., OSDI 2021, from the artifact's
result files): Pollux 2,751 s, Tiresias (tuned) 4,038 s. Writes benchmarks/results/
simulate_pollux.{md,json} and simulate_pollux_{jct_cdf,utilisation}.png (workload 1, 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from hpcsched.allocator import Cluster
from hpcsched.simulator import POLICY_NAMES, RestartModel, SimulationResult, read_workload, simulate
from hpcsched.simulator.data import default_applications
from hpcsched.simulator.report import plot, table

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHED = {"pollux": 2751.0, "tiresias": 4038.0}
WORKLOADS = range(1, 9)
Run = tuple[str, int, str, str]


def run(item: tuple[Path, Run]) -> tuple[Run, SimulationResult, float]:
    data, (folder, number, policy, cost) = item
    apps = default_applications(data)
    workload = read_workload(data / folder / f"workload-{number}.csv", list(apps))
    start = time.process_time()
    result = simulate(workload, policy, Cluster(16, 4), RestartModel.parse(cost), seed=0, applications=apps)
    return (folder, number, policy, cost), result, time.process_time() - start


def plan() -> list[Run]:
    runs = [("workloads", n, p, c) for c in ("30", "slurm") for p in POLICY_NAMES for n in WORKLOADS]
    return runs + [("workloads-2.0", n, p, "30") for p in ("hpcsched", "pollux") for n in WORKLOADS]


def mean_metric(done: dict[Run, SimulationResult], folder: str, policy: str, cost: str, key: str) -> float:
    values = [float(done[(folder, n, policy, cost)].metrics()[key]) for n in WORKLOADS]
    return statistics.fmean(values)


def worst_metric(done: dict[Run, SimulationResult], folder: str, policy: str, cost: str, key: str) -> float:
    return max(float(done[(folder, n, policy, cost)].metrics()[key]) for n in WORKLOADS)


def summary(done: dict[Run, SimulationResult]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    groups = (("workloads", ("30", "slurm"), POLICY_NAMES), ("workloads-2.0", ("30",), ("hpcsched", "pollux")))
    for folder, costs, policies in groups:
        for cost in costs:
            for policy in policies:
                key = f"{folder}/{policy}/{cost}"
                rows[key] = {
                    "avg_jct": mean_metric(done, folder, policy, cost, "avg_jct"),
                    "p99_jct": mean_metric(done, folder, policy, cost, "p99_jct"),
                    "makespan": mean_metric(done, folder, policy, cost, "makespan"),
                    "utilisation": mean_metric(done, folder, policy, cost, "utilisation"),
                    "restarts_per_job": mean_metric(done, folder, policy, cost, "restarts_per_job"),
                    "restart_time_fraction": mean_metric(done, folder, policy, cost, "restart_time_fraction"),
                    "worst_ftf": worst_metric(done, folder, policy, cost, "worst_ftf"),
                    "per_workload_avg_jct": [done[(folder, n, policy, cost)].metrics()["avg_jct"] for n in WORKLOADS],
                }
    return rows


def targets(rows: dict[str, Any]) -> list[tuple[str, str, float, bool]]:
    def jct(policy: str, cost: str = "30", folder: str = "workloads") -> float:
        return float(rows[f"{folder}/{policy}/{cost}"]["avg_jct"])

    h30, hs = rows["workloads/hpcsched/30"], rows["workloads/hpcsched/slurm"]
    ours, static, slurm, pollux_slurm = jct("hpcsched"), jct("static"), jct("hpcsched", "slurm"), jct("pollux", "slurm")
    checks = [
        ("hpcsched avg JCT <= 2,751 s (published Pollux)", f"{ours:,.0f} s", ours <= 2751),
        ("hpcsched avg JCT <= 0.5x static (same run)", f"{ours / static:.2f}x", ours <= 0.5 * static),
        ("slurm cost: hpcsched <= 1.1x its 30 s figure", f"{slurm / ours:.2f}x", slurm <= 1.1 * ours),
        ("slurm cost: hpcsched ahead of pollux", f"{slurm:,.0f} vs {pollux_slurm:,.0f} s", slurm < pollux_slurm),
    ]
    for label, row in (("30 s", h30), ("slurm", hs)):
        checks += [
            (f"{label}: worst FTF <= 2", f"{row['worst_ftf']:.2f}", row["worst_ftf"] <= 2.0),
            (f"{label}: restarts/job <= 3", f"{row['restarts_per_job']:.2f}", row["restarts_per_job"] <= 3.0),
            (f"{label}: restart time <= 5%", f"{row['restart_time_fraction']:.1%}", row["restart_time_fraction"] <= 0.05),
        ]
    double = jct("hpcsched", folder="workloads-2.0")
    checks.append(("2x load: hpcsched avg JCT <= 2x its 1.0x figure", f"{double / ours:.2f}x", double <= 2 * ours))
    return [(label, value, 0.0, ok) for label, value, ok in checks]


def markdown(rows: dict[str, Any], done: dict[Run, SimulationResult], seconds: float) -> str:
    titles = ("load", "restart", "policy", "avg JCT (s)", "p99 JCT (s)", "makespan (s)", "GPU util.", "restarts/job",
              "restart time", "worst FTF")
    head = "| " + " | ".join(titles) + " |"
    lines = ["# Pollux workloads: hpcsched vs baselines (simulated)", "",
             "16 nodes x 4 GPUs, decision every 60 s, seed 0; means over workloads 1-8 (worst FTF: max).", "",
             head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, row in rows.items():
        folder, policy, cost = key.split("/")
        load = "2.0x" if folder.endswith("2.0") else "1.0x"
        cells = [load, cost if cost == "slurm" else cost + " s", policy, f"{row['avg_jct']:,.0f}", f"{row['p99_jct']:,.0f}",
                 f"{row['makespan']:,.0f}", f"{row['utilisation']:.1%}", f"{row['restarts_per_job']:.2f}",
                 f"{row['restart_time_fraction']:.1%}", f"{row['worst_ftf']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    published = f"Pollux {PUBLISHED['pollux']:,.0f} s, Tiresias {PUBLISHED['tiresias']:,.0f} s"
    lines += ["", f"Published (study's result files, 1.0x): {published}.", "", "| target | measured | met |", "|---|---:|---|"]
    lines += [f"| {label} | {value} | {'yes' if ok else 'NO'} |" for label, value, _, ok in targets(rows)]
    python = f"{platform.python_implementation()} {platform.python_version()}"
    lines += ["", "Workload 1, 30 s restart cost:", "", table([done[("workloads", 1, p, "30")] for p in POLICY_NAMES]),
              f"CPU time of all {len(done)} runs: {seconds:,.0f} s ({python}, {os.cpu_count()} CPUs).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPCSCHED_POLLUX_DATA", "/work/shared/data/pollux")))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    done: dict[Run, SimulationResult] = {}
    cpu = 0.0
    wall = time.perf_counter()
    with Pool(args.jobs) as pool:
        for key, result, seconds in pool.imap_unordered(run, [(args.data, item) for item in plan()]):
            done[key], cpu = result, cpu + seconds
            print(f"{len(done)}/{len(plan())} {key} avg JCT {result.metrics()['avg_jct']:,.0f} s", file=sys.stderr, flush=True)
    rows = summary(done)
    RESULTS.mkdir(exist_ok=True)
    plot([done[("workloads", 1, p, "30")] for p in POLICY_NAMES], RESULTS, "simulate_pollux")
    text = markdown(rows, done, cpu) + f"Wall time: {time.perf_counter() - wall:,.0f} s with {args.jobs} processes.\n"
    checks = [{"target": label, "measured": value, "met": ok} for label, value, _, ok in targets(rows)]
    record = {"published": PUBLISHED, "rows": rows, "targets": checks}
    (RESULTS / "simulate_pollux.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "simulate_pollux.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
