"""Replay the Pollux workloads under every policy, all with the same information and timing.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/simulate_pollux.py [--data DIR] [--jobs 2]
        [--workload N]... [--policy P]... [--cost 30|slurm]... [--load 1.0|2.0]... [--write] [--ablation]

Runs, all on 16 nodes x 4 GPUs, seed 0, every policy deciding in the same 60 s rounds (no policy
starts jobs between rounds) and seeing each job through the simulator's information layer
(hpcsched/simulator/knowledge.py: step-time models fitted online from the configurations a job
has run, measured noise, declared work; Pollux's growth cap on for both elastic policies):

* the eight 1.0x workloads under static, static-realistic, slurm-backfill, tiresias, pollux and
  hpcsched, and the upper bounds pollux-oracle and hpcsched-oracle (told the true models and
  remaining work, no growth cap), with a fixed 30 s restart cost (the study's setting) and the
  slurm-realistic cost;
* robustness, 30 s, workloads 1, 3, 5 and 7: hpcsched with every job declaring half or 1.5x the
  work it does, and hpcsched and pollux with jobs stopping early (after 50-100% of their epochs).

``--load 2.0`` runs workloads 1 and 5 at 2.0x (``workloads-2.0``) under hpcsched and pollux with
30 s instead (not in the written results: CPU). pollux-faithful (policies/pollux.py) has its own
benchmark and is not run here.

One BLAS thread per process: the online model fits are small L-BFGS-B problems, which idle BLAS
threads slowed five-fold on a busy machine (runs are spread over processes instead).

Average JCT per policy is the mean over the workloads of each workload's average JCT (as the
study's ``summary.json`` computes it). Published (Qiao et al., OSDI 2021, over all eight 1.0x
workloads, their own simulator): Pollux 2,751 s, Tiresias 4,038 s. Writes benchmarks/results/
simulate_pollux.{md,json} and simulate_pollux_{jct_cdf,utilisation}.png (workload 1, 30 s).

``--workload``, ``--policy``, ``--cost`` and ``--load`` keep only the matching runs (for quick
iterations) and print their summary; nothing is written then unless ``--write`` (the results
files then say which workloads they cover). ``--ablation`` replays the sample
with both restart costs under hpcsched with one default changed at a time and prints the table
of docs/allocator.md; nothing is written either.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from hpcsched.allocator import HPCSCHED, POLLUX, Cluster
from hpcsched.simulator import POLICY_NAMES, RestartModel, SimulationResult, read_workload, simulate
from hpcsched.simulator.data import data_dir, default_applications
from hpcsched.simulator.knowledge import EXACT, Information
from hpcsched.simulator.policies import ElasticPolicy, Policy, make_policy
from hpcsched.simulator.report import plot, table

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHED = {"pollux": 2751.0, "tiresias": 4038.0}
WORKLOADS = tuple(range(1, 9))
ROBUSTNESS_WORKLOADS = (1, 3, 5, 7)
DOUBLE_LOAD = (1, 5)
# Only in the 2.0x runs, not in the default plan (CPU): ``--load 2.0``.
LOADS = {"1.0": "workloads", "2.0": "workloads-2.0"}
UNDECLARED = "hpcsched-undeclared"
BOUNDS = ("pollux-oracle", "hpcsched-oracle")
# Robustness cases, run at 30 s: "<policy>@<case>" replays <policy> with these declarations.
CASES = {
    "declared-x0.5": Information(declared_scale=0.5),
    "declared-x1.5": Information(declared_scale=1.5),
    "early-stop": Information(early_stop=0.5),
}
ROBUSTNESS = ("hpcsched@declared-x0.5", "hpcsched@declared-x1.5", "hpcsched@early-stop", "pollux@early-stop")
Run = tuple[str, int, str, str]


def _hpcsched(name: str, explore: bool = True, declared: bool = True, **knobs: Any) -> Callable[[], Policy]:
    return lambda: ElasticPolicy(name, dataclasses.replace(HPCSCHED, **knobs), explore, declared, on_arrival=True)


# Policies beyond POLICY_NAMES, by name: the undeclared row and the ablation.
VARIANTS: dict[str, Callable[[], Policy]] = {
    UNDECLARED: _hpcsched(UNDECLARED, declared=False),
    "no-fair-recovery": _hpcsched("no-fair-recovery", fair_recovery=False),
    "settle-0": _hpcsched("settle-0", settle_s=0.0),
    "horizon-inf": _hpcsched("horizon-inf", horizon_s=math.inf),
    "hysteresis-0.25": _hpcsched("hysteresis-0.25", hysteresis=0.25),
    "srpt-0": _hpcsched("srpt-0", srpt_weight=0.0),
    "short-0": _hpcsched("short-0", short_s=0.0),
    "price-waiting": _hpcsched("price-waiting", price_waiting=True),
    "admission-eager": _hpcsched("admission-eager", admission_pays=False),
    "no-cap": _hpcsched("no-cap", explore=False),
    "pollux-no-cap": lambda: ElasticPolicy("pollux-no-cap", POLLUX, explore=False),
}
ABLATION = (
    ("hpcsched defaults", "hpcsched"),
    ("remaining work not declared (least attained service)", UNDECLARED),
    ("`admission_pays = False` (a newcomer is admitted whatever the room costs)", "admission-eager"),
    ("`fair_recovery = False` (full settle window for grows toward the fair share)", "no-fair-recovery"),
    ("`settle_s = 0`", "settle-0"),
    ("`horizon_s = inf` (whole remaining run)", "horizon-inf"),
    ("`hysteresis = 0.25`", "hysteresis-0.25"),
    ("`srpt_weight = 0` (no remaining-time weights)", "srpt-0"),
    ("`short_s = 0` (short jobs do not preempt)", "short-0"),
    ("`price_waiting = True`", "price-waiting"),
    ("no growth cap (may grow beyond 2x the largest size run)", "no-cap"),
    ("`POLLUX` preset", "pollux"),
    ("`POLLUX` preset without the growth cap", "pollux-no-cap"),
)


def policy_named(name: str) -> tuple[Policy, Information]:
    """The policy a run names, and the case's declarations (``policy@case``)."""
    policy, _, case = name.partition("@")
    return (VARIANTS[policy]() if policy in VARIANTS else make_policy(policy)), CASES[case] if case else EXACT


def run(item: tuple[Path, Run]) -> tuple[Run, SimulationResult, float]:
    data, (folder, number, policy, cost) = item
    apps = default_applications(data)
    workload = read_workload(data / folder / f"workload-{number}.csv", list(apps))
    start = time.process_time()
    chosen, information = policy_named(policy)
    result = simulate(
        workload, chosen, Cluster(16, 4), RestartModel.parse(cost), seed=0, applications=apps, information=information
    )
    return (folder, number, policy, cost), result, time.process_time() - start


# Policies compared here; pollux-faithful (policies/pollux.py) has its own benchmark.
COMPARED = tuple(name for name in POLICY_NAMES if name != "pollux-faithful")


def plan(double: bool = False) -> list[Run]:
    runs = [("workloads", n, p, c) for c in ("30", "slurm") for p in (*COMPARED, *BOUNDS) for n in WORKLOADS]
    runs += [("workloads", n, p, "30") for p in ROBUSTNESS for n in ROBUSTNESS_WORKLOADS]
    return runs + ([("workloads-2.0", n, p, "30") for p in ("hpcsched", "pollux") for n in DOUBLE_LOAD] if double else [])


def ablation_plan() -> list[Run]:
    return [("workloads", n, p, c) for _, p in ABLATION for c in ("30", "slurm") for n in WORKLOADS]


def groups(done: dict[Run, SimulationResult]) -> dict[tuple[str, str, str], list[int]]:
    """The workloads done per (folder, policy, cost), in the order run."""
    found: dict[tuple[str, str, str], list[int]] = {}
    for folder, number, policy, cost in done:
        found.setdefault((folder, policy, cost), []).append(number)
    return found


def summary(done: dict[Run, SimulationResult]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for (folder, policy, cost), numbers in groups(done).items():
        metrics = [done[(folder, n, policy, cost)].metrics() for n in numbers]

        def mean(key: str, metrics: list[dict[str, Any]] = metrics) -> float:
            return statistics.fmean(float(m[key]) for m in metrics)

        rows[f"{folder}/{policy}/{cost}"] = {
            **{
                key: mean(key)
                for key in ("avg_jct", "p99_jct", "makespan", "utilisation", "restarts_per_job", "restart_time_fraction")
            },
            "worst_ftf": max(float(m["worst_ftf"]) for m in metrics),
            "per_workload_avg_jct": [m["avg_jct"] for m in metrics],
        }
    return rows


def targets(rows: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The issue's targets at equal information (same run, same sample)."""

    def jct(policy: str, cost: str = "30", folder: str = "workloads") -> float:
        return float(rows[f"{folder}/{policy}/{cost}"]["avg_jct"])

    checks = []
    for cost, limit in (("30", 0.90), ("slurm", 0.85)):
        if f"workloads/hpcsched/{cost}" not in rows:
            continue
        ours, pollux, static = jct("hpcsched", cost), jct("pollux", cost), jct("static", cost)
        row = rows[f"workloads/hpcsched/{cost}"]
        label = "30 s" if cost == "30" else "slurm"
        checks += [
            (f"{label}: hpcsched avg JCT <= {limit:.2f}x pollux", f"{ours / pollux:.3f}x ({ours:,.0f} / {pollux:,.0f} s)",
             ours <= limit * pollux),
            (f"{label}: hpcsched avg JCT <= 0.5x static", f"{ours / static:.2f}x", ours <= 0.5 * static),
            (f"{label}: worst FTF <= 1.5", f"{row['worst_ftf']:.2f}", row["worst_ftf"] <= 1.5),
            (f"{label}: restarts/job <= 3", f"{row['restarts_per_job']:.2f}", row["restarts_per_job"] <= 3.0),
        ]  # fmt: skip
    return checks


def robustness_table(done: dict[Run, SimulationResult]) -> list[str]:
    """Each robustness case beside the same policy with exact declarations, same workloads."""

    def mean(policy: str, key: str) -> float:
        return statistics.fmean(float(done[("workloads", n, policy, "30")].metrics()[key]) for n in ROBUSTNESS_WORKLOADS)

    lines = [
        "| case (30 s) | avg JCT (s) | exact declarations (s) | ratio | worst FTF | restarts/job |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in ROBUSTNESS:
        policy = case.partition("@")[0]
        jct, exact = mean(case, "avg_jct"), mean(policy, "avg_jct")
        worst = max(float(done[("workloads", n, case, "30")].metrics()["worst_ftf"]) for n in ROBUSTNESS_WORKLOADS)
        lines.append(
            f"| {case} | {jct:,.0f} | {exact:,.0f} | {jct / exact:.3f} | {worst:.2f} | {mean(case, 'restarts_per_job'):.2f} |"
        )
    return lines


def rows_table(rows: dict[str, Any]) -> list[str]:
    titles = (
        "load",
        "restart",
        "policy",
        "avg JCT (s)",
        "p99 JCT (s)",
        "makespan (s)",
        "GPU util.",
        "restarts/job",
        "restart time",
        "worst FTF",
    )
    lines = ["| " + " | ".join(titles) + " |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, row in rows.items():
        folder, policy, cost = key.split("/")
        load = "2.0x (1, 5)" if folder.endswith("2.0") else "1.0x"
        cells = [
            load,
            cost if cost == "slurm" else cost + " s",
            policy,
            f"{row['avg_jct']:,.0f}",
            f"{row['p99_jct']:,.0f}",
            f"{row['makespan']:,.0f}",
            f"{row['utilisation']:.1%}",
            f"{row['restarts_per_job']:.2f}",
            f"{row['restart_time_fraction']:.1%}",
            f"{row['worst_ftf']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def unfair_jobs(done: dict[Run, SimulationResult], policy: str = "hpcsched", limit: float = 2.0) -> list[str]:
    """Every 1.0x job of ``policy`` whose finish-time fairness is above ``limit``, worst first."""
    found = [
        (job, number, cost)
        for (folder, number, name, cost), result in done.items()
        if folder == "workloads" and name == policy
        for job in result.jobs
        if job.ftf > limit
    ]
    lines = [
        "| restart | workload | job | T_alone (s) | waited for its first decision (s) | JCT (s) | FTF |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for job, number, cost in sorted(found, key=lambda item: -item[0].ftf):
        cells = [
            cost if cost == "slurm" else cost + " s",
            str(number),
            job.name,
            f"{job.alone_s:,.0f}",
            f"{job.first_start - job.submit_time:,.0f}",
            f"{job.jct:,.0f}",
            f"{job.ftf:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines if found else []


def markdown(rows: dict[str, Any], done: dict[Run, SimulationResult], seconds: float) -> str:
    lines = [
        "# Pollux workloads: hpcsched vs baselines (simulated)",
        "",
        "16 nodes x 4 GPUs, seed 0, every policy deciding in the same 60 s rounds and seeing the jobs through the "
        "information layer (fitted step-time models, measured noise, declared work, growth cap); means over "
        f"workloads {', '.join(sorted({str(n) for _, n, _, _ in done}))} (worst FTF: max). `-oracle`: told the true models and "
        "remaining work, no growth cap (upper bounds, not baselines). `@declared-x0.5`/`x1.5`: every job declares "
        "half / 1.5x the work it does; `@early-stop`: jobs stop after a seeded 50-100% of the epochs they declare.",
        "",
        *rows_table(rows),
    ]
    published = f"Pollux {PUBLISHED['pollux']:,.0f} s, Tiresias {PUBLISHED['tiresias']:,.0f} s"
    lines += [
        "",
        f"Published (study's result files, all eight 1.0x workloads, its own simulator): {published}.",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
    ]
    lines += [f"| {label} | {value} | {'yes' if ok else 'NO'} |" for label, value, ok in targets(rows)]
    if all(("workloads", n, case, "30") in done for case in ROBUSTNESS for n in ROBUSTNESS_WORKLOADS):
        workloads = ", ".join(map(str, ROBUSTNESS_WORKLOADS))
        lines += ["", f"Robustness (workloads {workloads}; the exact column: the same workloads):", "", *robustness_table(done)]
    unfair = unfair_jobs(done)
    if unfair:
        lines += ["", "hpcsched's jobs with a finish-time fairness above 2 (1.0x load):", "", *unfair]
    python = f"{platform.python_implementation()} {platform.python_version()}"
    lines += [
        "",
        "Workload 1, 30 s restart cost:",
        "",
        table([done[("workloads", 1, p, "30")] for p in COMPARED]),
        f"CPU time of all {len(done)} runs: {seconds:,.0f} s ({python}, {os.cpu_count()} CPUs).",
        "",
    ]
    return "\n".join(lines)


def ablation_table(rows: dict[str, Any]) -> str:
    lines = ["| variant | avg JCT 30 s / slurm (s) | restarts/job | restart time | worst FTF |", "|---|---:|---:|---:|---:|"]
    for label, policy in ABLATION:
        a, b = rows[f"workloads/{policy}/30"], rows[f"workloads/{policy}/slurm"]
        lines.append(
            f"| {label} | {a['avg_jct']:,.0f} / {b['avg_jct']:,.0f} | {a['restarts_per_job']:.2f} / "
            f"{b['restarts_per_job']:.2f} | {a['restart_time_fraction']:.1%} / {b['restart_time_fraction']:.1%} | "
            f"{a['worst_ftf']:.2f} / {b['worst_ftf']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def replay(data: Path, runs: Sequence[Run], processes: int) -> tuple[dict[Run, SimulationResult], float]:
    done: dict[Run, SimulationResult] = {}
    cpu = 0.0
    with Pool(processes) as pool:
        for key, result, seconds in pool.imap_unordered(run, [(data, item) for item in runs]):
            done[key], cpu = result, cpu + seconds
            m = result.metrics()
            print(
                f"{len(done)}/{len(runs)} {key} avg JCT {m['avg_jct']:,.0f} s, restarts/job {m['restarts_per_job']:.2f}, "
                f"worst FTF {m['worst_ftf']:.2f}, CPU {seconds:,.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return {key: done[key] for key in runs}, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data", type=Path, default=data_dir(), help="Pollux data (default: the packaged copy)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--workload", type=int, action="append", choices=WORKLOADS, help="only these workloads")
    names = (*POLICY_NAMES, *BOUNDS, *ROBUSTNESS, UNDECLARED)
    parser.add_argument("--policy", action="append", choices=names, help="only these policies")
    parser.add_argument("--cost", action="append", choices=("30", "slurm"), help="only these restart costs")
    parser.add_argument("--load", action="append", choices=tuple(LOADS), help="only these loads")
    parser.add_argument("--ablation", action="store_true", help="print the ablation table of docs/allocator.md")
    parser.add_argument("--write", action="store_true", help="write the results files for a subset too")
    args = parser.parse_args()
    wall = time.perf_counter()
    if args.ablation:
        done, _ = replay(args.data, ablation_plan(), args.jobs)
        print(ablation_table(summary(done)) + f"Wall time: {time.perf_counter() - wall:,.0f} s with {args.jobs} processes.")
        return
    runs = [
        r
        for r in plan(double=bool(args.load) and "2.0" in args.load)
        if (args.workload is None or r[1] in args.workload)
        and (args.policy is None or r[2] in args.policy)
        and (args.cost is None or r[3] in args.cost)
        and (args.load is None or r[0] in {LOADS[x] for x in args.load})
    ]
    if not runs:
        parser.error("no run matches --workload, --policy, --cost and --load (2.0x: hpcsched and pollux, 30 s, workloads 1, 5)")
    done, cpu = replay(args.data, runs, args.jobs)
    if len(runs) < len(plan()) and not args.write:
        for key, result in done.items():
            m, worst = result.metrics(), max(result.jobs, key=lambda job: job.ftf)
            print(
                f"{key}: avg JCT {m['avg_jct']:,.0f} s, restarts/job {m['restarts_per_job']:.2f}, restart time "
                f"{m['restart_time_fraction']:.1%}, worst FTF {worst.ftf:.2f} ({worst.name})"
            )
        print("\n".join(["", *rows_table(summary(done))]))
        return
    rows = summary(done)
    RESULTS.mkdir(exist_ok=True)
    plot([done[("workloads", 1, p, "30")] for p in COMPARED], RESULTS, "simulate_pollux")
    text = markdown(rows, done, cpu) + f"Wall time: {time.perf_counter() - wall:,.0f} s with {args.jobs} processes.\n"
    checks = [{"target": label, "measured": value, "met": ok} for label, value, ok in targets(rows)]
    record = {"published": PUBLISHED, "rows": rows, "targets": checks}
    (RESULTS / "simulate_pollux.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "simulate_pollux.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
