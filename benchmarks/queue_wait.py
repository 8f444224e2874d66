"""Benchmark (issue 16, item 3): the simulator's Slurm queue-wait model against queue waits measured
on the local cluster.

The ``slurm`` restart model (hpcsched/simulator/restarts.py) makes every start and grow wait in the
queue for a time drawn from an exponential distribution with mean ``30 s / (1 - load)``, ``load``
the jobs present over the GPUs (capped at 0.95). Here a stream of plain one-node jobs (Poisson
arrivals, exponential run times, ``sleep``) of an ordinary user goes to the ``wide`` partition at
several offered loads, and each job's queue wait (Slurm's Start - Submit, from ``sacct``) is set
beside what the model draws for the same ``load`` (this experiment's jobs present at the
submission, over the partition's nodes: one node is one GPU-sized slot here).

Run as root after `make setup` (the jobs are submitted as hpcuser2, who does not use hpcsched):
    .venv/bin/python benchmarks/queue_wait.py [--quick]

Writes benchmarks/results/queue_wait.{json,md} (about 25 minutes; --quick: one load, 2 minutes,
results under queue_wait-quick).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import RESULTS, write_results

from hpcsched.simulator.restarts import RestartModel

USER = "hpcuser2"
PARTITION = "wide"
NAME = "queue-wait-bench"
LOADS = (0.3, 0.6, 0.8, 0.95)
MEAN_RUN_S = 20.0
ARRIVALS_S = 240.0
BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 1.0), (1.0, 1.5), (1.5, None))  # None: no upper bound


@dataclass(frozen=True)
class Arrival:
    at_s: float  # after the level's start
    run_s: int  # the job's sleep


def arrivals(load: float, nodes: int, seed: int, span_s: float = ARRIVALS_S, mean_run_s: float = MEAN_RUN_S) -> list[Arrival]:
    """Poisson arrivals at ``load * nodes / mean_run_s`` per second over ``span_s``, each job's run
    time exponential with mean ``mean_run_s`` (at least 1 s): an offered load of ``load``."""
    rng = np.random.default_rng(seed)
    rate = load * nodes / mean_run_s
    out, now = [], float(rng.exponential(1.0 / rate))
    while now < span_s:
        out.append(Arrival(now, max(1, round(float(rng.exponential(mean_run_s))))))
        now += float(rng.exponential(1.0 / rate))
    return out


def partition_nodes() -> int:
    out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%D"], capture_output=True, text=True, check=True)
    return sum(int(line) for line in out.stdout.split())


def submit(arrival: Arrival) -> int:
    argv = ["sbatch", "--parsable", f"--partition={PARTITION}", "--nodes=1", f"--job-name={NAME}", "--time=5",
            "--output=/dev/null", f"--wrap=sleep {arrival.run_s}"]  # fmt: skip
    out = subprocess.run(argv, user=USER, group=USER, cwd="/tmp", capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout.strip().split(";")[0])


def wait_until_gone(ids: list[int], limit_s: float = 900.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(map(str, ids))], capture_output=True, text=True)
        if not out.stdout.strip():
            return
        time.sleep(2)
    raise SystemExit(f"jobs still in the queue after {limit_s:.0f} s: {out.stdout.split()[:10]}")


def accounting(ids: list[int]) -> list[dict[str, float]]:
    """Submit, start and end of each job (epoch seconds, Slurm's one-second resolution)."""
    argv = ["sacct", "-X", "-n", "-P", "-j", ",".join(map(str, ids)), "--format=JobIDRaw,Submit,Start,End"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        job, *stamps = line.split("|")
        if any(not s or s == "Unknown" for s in stamps):
            raise SystemExit(f"job {job} has no start or end in sacct: {line}")
        submit_t, start_t, end_t = (datetime.datetime.fromisoformat(s).timestamp() for s in stamps)
        rows.append({"job": int(job), "submit": submit_t, "start": start_t, "end": end_t})
    return rows


def with_load(rows: list[dict[str, float]], nodes: int) -> list[dict[str, float]]:
    """Each job's wait and the model's ``load`` at its submission: jobs present (submitted before
    it, not yet ended) over ``nodes``, itself included, as the simulator counts a job present
    from its arrival; ``fits``: whether it could start at once (a node free and no job waiting
    ahead of it), the only case in which the simulator's policies start or grow a job: they
    allocate free GPUs, and the model's wait is Slurm's delay on top."""
    out = []
    for row in rows:
        present = sum(1 for other in rows if other["submit"] <= row["submit"] < other["end"])
        others = [other for other in rows if other is not row]
        running = sum(1 for other in others if other["start"] <= row["submit"] < other["end"])
        ahead = sum(1 for other in others if other["submit"] <= row["submit"] < other["start"])
        out.append({**row, "wait": row["start"] - row["submit"], "load": present / nodes, "fits": running < nodes and not ahead})
    return out


def run_level(load: float, nodes: int, seed: int, span_s: float) -> list[dict[str, float]]:
    plan = arrivals(load, nodes, seed, span_s)
    began, ids = time.monotonic(), []
    for arrival in plan:
        time.sleep(max(0.0, began + arrival.at_s - time.monotonic()))
        ids.append(submit(arrival))
    wait_until_gone(ids)
    time.sleep(3)  # slurmdbd records the last ends
    rows = with_load(accounting(ids), nodes)
    return [{**row, "offered_load": load} for row in rows]


def compare(rows: list[dict[str, float]], model: RestartModel) -> list[dict[str, Any]]:
    """Per bin of ``load`` and whether the job fitted at once: the measured waits beside the
    model's mean for the same loads."""
    table = []
    for (low, high), fits in itertools.product(BINS, (True, False)):
        inside = [r for r in rows if low <= r["load"] and (high is None or r["load"] < high) and r["fits"] == fits]
        if not inside:
            continue
        waits = np.array([r["wait"] for r in inside])
        modelled = np.array([model.mean_wait(r["load"]) for r in inside])
        table.append({"bin": [low, high], "fits": fits, "jobs": len(inside), "measured_mean_s": float(waits.mean()),
                      "measured_median_s": float(np.median(waits)), "measured_p90_s": float(np.percentile(waits, 90)),
                      "waited_share": float(np.mean(waits > 1.0)), "model_mean_s": float(modelled.mean())})  # fmt: skip
    return table


def markdown(rows: list[dict[str, float]], table: list[dict[str, Any]], nodes: int, started: str, span_s: float) -> str:
    offered = ", ".join(f"{x:g}" for x in sorted({r["offered_load"] for r in rows}))
    lines = [
        "# Queue waits on the local cluster against the simulator's Slurm model",
        "",
        f"Run {started}. Plain one-node `sleep` jobs of {USER} on partition `{PARTITION}` ({nodes} nodes), Poisson "
        f"arrivals for {span_s:.0f} s per offered load ({offered}); "
        f"run times exponential with mean {MEAN_RUN_S:.0f} s. Wait: Slurm's Start - Submit (`sacct`, 1 s resolution). "
        "Load: this experiment's jobs present at the submission over the nodes, as the model counts it. "
        "Could start at once: a node was free and no job waited ahead of it (the only case in which the simulator's "
        "policies start or grow a job; the model's wait is Slurm's delay on top of that). "
        "Model: the `slurm` restart model's mean queue wait, 30 s / (1 - load), load capped at 0.95. "
        "The local slurmctld runs `sched_interval=5,bf_interval=5` (Slurm's defaults are 60 and 30). "
        "Command: `.venv/bin/python benchmarks/queue_wait.py`.",
        "",
        "| load at submission | could start at once | jobs | measured mean (s) | median | 90th pct | share that waited > 1 s "
        "| model mean (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for b in table:
        low, high = b["bin"]
        span = f"{low:g}-{high:g}" if high is not None else f">= {low:g}"
        fits = "yes" if b["fits"] else "no"
        lines.append(f"| {span} | {fits} | {b['jobs']} | {b['measured_mean_s']:.1f} | {b['measured_median_s']:.0f} "
                     f"| {b['measured_p90_s']:.0f} | {b['waited_share']:.0%} | {b['model_mean_s']:.0f} |")  # fmt: skip
    waits = np.array([r["wait"] for r in rows])
    lines += ["", f"All {len(rows)} jobs: mean wait {waits.mean():.1f} s, median {np.median(waits):.0f} s, "
              f"maximum {waits.max():.0f} s.", ""]  # fmt: skip
    return "\n".join(lines)


def rescore(name: str) -> None:
    """Recompute loads, bins and the table from the Slurm times a run recorded."""
    data = json.loads((RESULTS / f"{name}.json").read_text())
    rows: list[dict[str, float]] = []
    for load in sorted({job["offered_load"] for job in data["jobs"]}):
        level = [{k: job[k] for k in ("job", "submit", "start", "end")} for job in data["jobs"] if job["offered_load"] == load]
        rows += [{**row, "offered_load": load} for row in with_load(level, data["nodes"])]
    table = compare(rows, RestartModel(kind="slurm"))
    span = data.get("span_s", ARRIVALS_S)
    write_results(name, {**data, "bins": table, "jobs": rows}, markdown(rows, table, data["nodes"], data["started"], span))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one load (0.8), 60 s of arrivals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rescore", action="store_true", help="score the jobs of the last run again (no jobs submitted)")
    args = parser.parse_args()
    if args.rescore:
        rescore("queue_wait-quick" if args.quick else "queue_wait")
        return
    nodes = partition_nodes()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    loads, span = ((0.8,), 60.0) if args.quick else (LOADS, ARRIVALS_S)
    rows: list[dict[str, float]] = []
    try:
        for k, load in enumerate(loads):
            level = run_level(load, nodes, args.seed + k, span)
            print(f"offered load {load}: {len(level)} jobs, mean wait {np.mean([r['wait'] for r in level]):.1f} s", flush=True)
            rows += level
    finally:
        subprocess.run(["scancel", "--name", NAME, "-u", USER], check=False)
    table = compare(rows, RestartModel(kind="slurm"))
    data = {"started": started, "nodes": nodes, "partition": PARTITION, "mean_run_s": MEAN_RUN_S, "span_s": span,
            "bins": table, "jobs": rows}  # fmt: skip
    write_results("queue_wait-quick" if args.quick else "queue_wait", data, markdown(rows, table, nodes, started, span))


if __name__ == "__main__":
    main()
