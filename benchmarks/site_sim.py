"""Site mode in the simulator: half the jobs plain (rigid) Slurm jobs, half elastic, four users.

For each workload (5-8 at 1.0x load, held out: no constant was tuned on them) and seed (0-2), one
run of the site policy beside the all-rigid baseline (every job rigid, same users, same seed) on
16 nodes x 4 GPUs at the Slurm-realistic restart cost. Users and rigid jobs: a seeded draw
(:func:`hpcsched.simulator.owners.assign_owners`, the run's seed). Elastic jobs see what a real
scheduler would (step-time models fitted online, measured noise, remaining work as declared:
hpcsched/simulator/knowledge.py) and grow make-before-break.

    .venv/bin/python benchmarks/site_sim.py

writes benchmarks/results/site_sim.{json,md} (about twelve minutes: each row also runs the
labelled references of :func:`references`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hpcsched.allocator import Cluster
from hpcsched.simulator import Application, JobSpec, RestartModel, read_workload, simulate
from hpcsched.simulator.data import data_dir, default_applications, resolve_workload
from hpcsched.simulator.fairness import SITE_POLICY, SiteComparison, compare_site, jct_ratio, user_ftf
from hpcsched.simulator.owners import all_elastic, assign_owners

RESULTS = Path(__file__).parent / "results"
WORKLOADS = (5, 6, 7, 8)
SEEDS = (0, 1, 2)
USERS = 4
RIGID_SHARE = 0.5
CLUSTER = Cluster(16, 4)
TARGETS = {  # metric: (most allowed, what it says)
    "rigid_jct_ratio": (1.0, "rigid jobs' avg JCT vs all-rigid"),
    "rigid_wait_ratio": (1.0, "rigid jobs' avg wait vs all-rigid"),
    "elastic_jct_ratio": (0.5, "elastic jobs' avg JCT vs the same jobs all-rigid"),
    "worst_user_ftf": (1.5, "worst per-user finish-time fairness"),
}


def run() -> list[dict[str, float]]:
    applications = default_applications()
    restart = RestartModel.parse("slurm")
    rows = []
    for number in WORKLOADS:
        workload = read_workload(resolve_workload(f"workload-{number}", data_dir()), list(applications))
        for seed in SEEDS:
            began = time.perf_counter()
            owned = assign_owners(workload, USERS, RIGID_SHARE, seed)
            site = compare_site(owned, CLUSTER, restart, seed, applications)
            metrics = {**site.metrics(), **references(owned, site, restart, seed, applications)}
            rows.append({"workload": number, "seed": seed, **metrics, "seconds": time.perf_counter() - began})
            print(f"workload {number} seed {seed}: {json.dumps({k: round(v, 3) for k, v in metrics.items()})}", flush=True)
    return rows


def references(
    owned: list[JobSpec], site: SiteComparison, restart: RestartModel, seed: int, applications: Mapping[str, Application]
) -> dict[str, float]:
    """Two labelled references beside a run, against the same all-rigid baseline: the upper
    bound (``site-oracle``, free restarts: the same rules, told the truth, resizing for nothing)
    and the same jobs with none rigid (what the rigid half and the good-citizen rules take from
    the elastic half)."""
    bound = compare_site(owned, CLUSTER, restart, seed, applications, upper_bound=True).metrics()
    everyone = all_elastic(owned)
    free_run = simulate(everyone, SITE_POLICY, CLUSTER, restart, seed=seed, applications=applications)
    elastic = [spec.name for spec in owned if not spec.rigid]
    return {
        "bound_rigid_jct_ratio": bound["rigid_jct_ratio"],
        "bound_elastic_jct_ratio": bound["elastic_jct_ratio"],
        "bound_worst_user_ftf": bound["worst_user_ftf"],
        "no_rigid_jct_ratio": jct_ratio(free_run, site.baseline, [spec.name for spec in owned]),
        "no_rigid_elastic_half_ratio": jct_ratio(free_run, site.baseline, elastic),
        "no_rigid_worst_user_ftf": max(user_ftf(everyone, free_run, CLUSTER, restart, seed, applications).values()),
    }


def markdown(rows: list[dict[str, float]]) -> str:
    lines = [
        "# Site mode in the simulator: rigid and elastic jobs of several users",
        "",
        f"{CLUSTER.num_nodes} nodes x {CLUSTER.gpus_per_node} GPUs, restart cost `slurm`, {USERS} users (seeded draw), "
        f"{RIGID_SHARE:.0%} of the jobs rigid (seeded draw), workloads {', '.join(map(str, WORKLOADS))} (1.0x), "
        f"seeds {', '.join(map(str, SEEDS))}. Baseline: the same jobs, users and seed with every job rigid "
        "(FIFO + EASY backfill). Elastic jobs see step-time models fitted online and the work they declare, "
        "and grow make-before-break; no constant was tuned on these workloads. "
        "Command: `.venv/bin/python benchmarks/site_sim.py`.",
        "",
        "| workload | seed | rigid JCT | rigid wait | rigid wait (s) site / all-rigid | elastic JCT | worst user FTF "
        "(all-rigid) | util. site / all-rigid | avg JCT (s) site / all-rigid |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']:.0f} | {r['seed']:.0f} | {r['rigid_jct_ratio']:.2f}x | {r['rigid_wait_ratio']:.2f}x "
            f"| {r['rigid_wait_mixed_s']:,.0f} / {r['rigid_wait_baseline_s']:,.0f} | {r['elastic_jct_ratio']:.2f}x "
            f"| {r['worst_user_ftf']:.2f} ({r['worst_user_ftf_baseline']:.2f}) "
            f"| {r['utilisation']:.1%} / {r['utilisation_baseline']:.1%} | {r['avg_jct']:,.0f} / {r['avg_jct_baseline']:,.0f} |"
        )
    lines += ["", "| target | mean | worst run | met (every run) |", "|---|---:|---:|---|"]
    for key, (most, text) in TARGETS.items():
        values = [r[key] for r in rows]
        met = "yes" if max(values) <= most else "no"
        lines.append(f"| {text} <= {most} | {np.mean(values):.2f} | {max(values):.2f} | {met} |")
    util = [r["utilisation"] for r in rows]
    base = [r["utilisation_baseline"] for r in rows]
    lines += ["", f"Utilisation: {np.mean(util):.1%} (all-rigid {np.mean(base):.1%}), mean over runs.", ""]
    return "\n".join(lines + reference_table(rows))


def reference_table(rows: list[dict[str, float]]) -> list[str]:
    """The labelled references of :func:`references`, per run and on the mean."""
    columns = {  # key: header
        "elastic_jct_ratio": "site: elastic JCT",
        "bound_elastic_jct_ratio": "upper bound: elastic JCT",
        "bound_rigid_jct_ratio": "upper bound: rigid JCT",
        "bound_worst_user_ftf": "upper bound: worst user FTF",
        "no_rigid_elastic_half_ratio": "none rigid: the same elastic jobs' JCT",
        "no_rigid_jct_ratio": "none rigid: all jobs' JCT",
        "no_rigid_worst_user_ftf": "none rigid: worst user FTF",
    }
    lines = [
        "## References (labelled; not results)",
        "",
        "Against the same all-rigid baseline. *Upper bound*: the mixed run under `site-oracle` with free restarts "
        "(the same good-citizen rules, the elastic jobs told the true step-time models and remaining work, and "
        "every start and resize free). *None rigid*: the same jobs and users with no job rigid (site policy, "
        "restart cost `slurm`): what the elastic jobs would gain if the other half were elastic too.",
        "",
        "| workload | seed | " + " | ".join(columns.values()) + " |",
        "|---:|---:|" + "---:|" * len(columns),
    ]
    for r in rows:
        cells = [f"{r[key]:.2f}" + ("" if key.endswith("ftf") else "x") for key in columns]
        lines.append(f"| {r['workload']:.0f} | {r['seed']:.0f} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([r[key] for r in rows]):.2f}" + ("" if key.endswith("ftf") else "x") for key in columns]
    lines += ["| mean | | " + " | ".join(means) + " |", ""]
    return lines


def main() -> None:
    began = time.perf_counter()
    rows = run()
    summary = {"rows": rows, "seconds": time.perf_counter() - began, "users": USERS, "rigid_share": RIGID_SHARE}
    (RESULTS / "site_sim.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "site_sim.md").write_text(markdown(rows) + f"\nWhole run: {summary['seconds']:.0f} s.\n")


if __name__ == "__main__":
    main()
