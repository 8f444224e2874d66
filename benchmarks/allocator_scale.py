"""How long one allocation round takes for 1,000 jobs on 512 nodes x 4 GPUs, on one core.

    .venv/bin/python benchmarks/allocator_scale.py [--data DIR]

The jobs are the six Pollux applications (fitted step-time models) with per-job gradient noise
drawn at random, so no two jobs share a goodput table: every round computes 1,000 of them, as a
cluster of distinct jobs would. About half the jobs are running (at sizes that pack the cluster),
the rest wait; sizes range up to 64 nodes. Each repetition starts with cold caches. Target: the
median of 5 rounds under 1 s. Writes benchmarks/results/allocator_scale.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from hpcsched.allocator import HPCSCHED, POLLUX, Cluster, ElasticJob, GoodputModel, Limits, RestartCost, allocate
from hpcsched.allocator.candidates import clear_caches
from hpcsched.allocator.placement import NodeLedger
from hpcsched.models import GradientNoise
from hpcsched.simulator.data import data_dir, default_applications

RESULTS = Path(__file__).resolve().parent / "results"
NODES, GPUS_PER_NODE, JOBS, REPEATS = 512, 4, 1000, 5


def jobs(data: Path, seed: int = 0) -> list[ElasticJob]:
    apps = list(default_applications(data).values())
    rng = np.random.default_rng(seed)
    ledger = NodeLedger([GPUS_PER_NODE] * NODES, GPUS_PER_NODE)
    out = []
    for i in range(JOBS):
        app = apps[i % len(apps)]
        noise = app.noise(app.base_bsz, int(rng.integers(0, len(app.epoch_ends))))
        noise = GradientNoise(noise.grad_sqr * float(rng.uniform(0.5, 2.0)), noise.grad_var)
        high = int(min(app.max_gpus, rng.choice([4, 16, 64, 256])))
        current = int(rng.choice([0, 1, 2, 4, 8])) if i % 2 == 0 else 0
        current = min(current, high) if current and ledger.place(i, min(current, high)) else 0
        out.append(ElasticJob(
            key=f"job{i}", model=GoodputModel(app.params, noise, app.limits), min_gpus=1, max_gpus=high,
            current_gpus=current, remaining_work=float(rng.uniform(0.01, 1.0)) * app.total_work,
            age_s=float(rng.uniform(0, 36000)), time_in_state_s=float(rng.uniform(0, 7200)),
            time_at_size_s=float(rng.uniform(60, 7200)), restarts=int(rng.integers(0, 4)),
            restart=RestartCost(queue_wait_s=60.0), account=f"user{i % 40}",
        ))
    return out


def round_seconds(requests: list[ElasticJob], policy: object) -> float:
    clear_caches()
    start = time.process_time()
    allocation = allocate(Cluster(NODES, GPUS_PER_NODE), requests, policy, Limits(max_nodes_per_account=64))  # type: ignore[arg-type]
    elapsed = time.process_time() - start
    assert sum(d.target_gpus for d in allocation.decisions) <= NODES * GPUS_PER_NODE
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=data_dir(), help="Pollux data (default: the packaged copy)")
    args = parser.parse_args()
    requests = jobs(args.data)
    results = {}
    for name, policy in (("hpcsched", HPCSCHED), ("pollux", POLLUX)):
        times = [round_seconds(requests, policy) for _ in range(REPEATS)]
        results[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": times}
    running = sum(1 for j in requests if j.current_gpus)
    lines = [
        "# Allocator: one round for 1,000 jobs on 512 nodes x 4 GPUs", "",
        f"{JOBS} jobs ({running} running, {JOBS - running} waiting), 6 applications with per-job noise, "
        f"sizes up to 256 GPUs, account limit 64 nodes; CPU time of one process (one core), cold caches, "
        f"{REPEATS} rounds. Target: median < 1 s.", "",
        "| policy | median (s) | min (s) | max (s) | target met |", "|---|---:|---:|---:|---|",
    ]
    lines += [f"| {n} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | {'yes' if r['median_s'] < 1 else 'NO'} |"
              for n, r in results.items()]
    lines += ["", f"{platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}, "
              f"{platform.machine()}, {os.cpu_count()} CPUs.", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "allocator_scale.json").write_text(json.dumps({"jobs": JOBS, "nodes": NODES, "gpus_per_node": GPUS_PER_NODE,
                                                              "running": running, "results": results}, indent=2) + "\n")
    (RESULTS / "allocator_scale.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
