"""hpcsched against the faithful Pollux baseline on workloads no constant was tuned on.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/heldout.py [--jobs 2]
        [--policy hpcsched]... [--group 1.0x]... [--fresh] [--timing arrival]

The allocator's defaults were tuned on Pollux workloads 1-4 at 1.0x load (docs/simulator.md,
"Tuned constants"). This reports on the rest, each cell beside ``pollux-faithful`` in the same
run settings (16 nodes x 4 GPUs, 60 s rounds, the information layer, Pollux's growth cap):

* ``1.0x``: workloads 5-8 at the study's 1.0x load; ``0.5x``, ``1.5x``, ``2.0x``: workloads 5-8
  at those loads;
* ``philly``: three 160-job samples of the Philly trace, from windows starting at the trace's
  25th, 50th and 75th percentile job, sample ``k`` drawn with seed ``k``;
* not ``workloads-realistic``: the 1.0x jobs with user-style submitted configurations, which the
  elastic policies do not use (both choose GPUs and batch), so its cells equal the 1.0x cells;
* both restart costs, ``30`` (deterministic: one run) and ``slurm`` (seeded queue waits: seeds
  0 and 1; a Philly sample runs with its own seed).

``hpcsched-nostop`` runs every cell too: hpcsched as the daemon and the coordinator act, never
stopping a running job (the simulator's ``hpcsched`` stops one where the allocator says so); the
md reports it in a table of its own beside the same Pollux cells.

``--timing arrival`` gives every policy Slurm's timing instead of 60 s rounds only
(``simulate(on_arrival=True)``, docs/simulator.md): a job that arrives starts at once if it fits
(hpcsched also runs its admission pass, as its daemon does on ``hpcsched run``), and jobs waiting
when one ends start on the GPUs it freed. That is how hpcsched acts on a Slurm cluster; Pollux's own
simulator decides in rounds only, so the default stays the rounds. Its cells go to
``heldout-arrival.{json,md}``.

Each finished cell is merged into benchmarks/results/heldout.{json,md} at once, so a policy or a
group can be rerun alone (``--policy``, ``--group``; ``--fresh`` forgets earlier cells). The md
gives, per group and cost, each policy's mean over cells, hpcsched's ratio to Pollux with its
spread over cells, the worst finish-time fairness and the restarts per job, then the issue's
targets over all held-out cells. About 50 minutes of CPU for everything.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from multiprocessing import Pool
from typing import Any

from common import read_results, simulated, write_results

from hpcsched.allocator import Cluster
from hpcsched.simulator import JobSpec, RestartModel, read_philly, read_workload, simulate
from hpcsched.simulator.data import data_dir, default_applications, workload_files

NAME = "heldout"
TIMINGS = {"rounds": NAME, "arrival": "heldout-arrival"}  # --timing: the results file of each
POLICIES = ("pollux-faithful", "hpcsched", "hpcsched-nostop")
BASELINE, OURS, AS_DAEMON = POLICIES  # AS_DAEMON: never stops a running job, as the daemon acts
WORKLOADS = (5, 6, 7, 8)
LOAD_FOLDERS = {"1.0x": "workloads", "0.5x": "workloads-0.5", "1.5x": "workloads-1.5", "2.0x": "workloads-2.0"}
PHILLY_STARTS = (0.25, 0.5, 0.75)  # where each sample's window starts, as a quantile of the trace
SLURM_SEEDS = (0, 1)
TARGETS = {"30": 0.90, "slurm": 0.85}  # hpcsched's avg JCT at most this times Pollux's
WORST_FTF, RESTARTS_PER_JOB = 1.5, 3.0
Cell = tuple[str, str, str, int]  # (group, set, cost, seed)


def cells() -> list[Cell]:
    out = []
    for group in LOAD_FOLDERS:
        for w in WORKLOADS:
            out.append((group, f"workload-{w}", "30", 0))
            out += [(group, f"workload-{w}", "slurm", seed) for seed in SLURM_SEEDS]
    for k in range(len(PHILLY_STARTS)):
        out += [("philly", f"sample-{k}", cost, k) for cost in ("30", "slurm")]
    return out


def jobs_of(group: str, name: str) -> list[JobSpec]:
    applications = list(default_applications())
    if group == "philly":
        k = int(name.removeprefix("sample-"))
        return read_philly(workload_files(data_dir())["philly"], applications, PHILLY_STARTS[k], seed=k)
    return read_workload(data_dir() / LOAD_FOLDERS[group] / f"{name}.csv", applications)


def key(policy: str, cell: Cell) -> str:
    group, name, cost, seed = cell
    return f"{policy}|{group}|{name}|{cost}|{seed}"


def run(item: tuple[str, Cell, bool]) -> tuple[str, dict[str, Any]]:
    policy, cell, on_arrival = item
    group, name, cost, seed = cell
    jobs = jobs_of(group, name)
    began = time.perf_counter()
    result = simulate(jobs, policy, Cluster(16, 4), RestartModel.parse(cost), seed=seed, applications=default_applications(),
                      on_arrival=on_arrival)
    return key(policy, cell), {**simulated(result.metrics(), began), "jobs": len(jobs)}


def load_previous(timing: str = "rounds") -> dict[str, Any]:
    return read_results(TIMINGS[timing], "cells")


def _pairs(done: dict[str, Any], keep: list[Cell], ours: str = OURS) -> list[tuple[Cell, dict[str, Any], dict[str, Any]]]:
    """The cells of ``keep`` that both policies have run: (cell, Pollux's, ``ours``'s)."""
    return [(c, done[key(BASELINE, c)], done[key(ours, c)]) for c in keep
            if key(BASELINE, c) in done and key(ours, c) in done]


def summary(pairs: list[tuple[Cell, dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
    ratios = [ours["avg_jct"] / base["avg_jct"] for _, base, ours in pairs]
    return {
        "cells": len(pairs),
        "pollux_jct": statistics.fmean(base["avg_jct"] for _, base, _ in pairs),
        "hpcsched_jct": statistics.fmean(ours["avg_jct"] for _, _, ours in pairs),
        "ratio_mean": statistics.fmean(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "pollux_worst_ftf": max(base["worst_ftf"] for _, base, _ in pairs),
        "hpcsched_worst_ftf": max(ours["worst_ftf"] for _, _, ours in pairs),
        "hpcsched_mean_worst_ftf": statistics.fmean(ours["worst_ftf"] for _, _, ours in pairs),
        "pollux_restarts": statistics.fmean(base["restarts_per_job"] for _, base, _ in pairs),
        "hpcsched_restarts": statistics.fmean(ours["restarts_per_job"] for _, _, ours in pairs),
    }


def groups() -> list[str]:
    return [*LOAD_FOLDERS, "philly"]


TIMING_TEXT = {
    "rounds": ("", "60 s rounds for both", ""),
    "arrival": (", Slurm's timing", "Slurm's timing for both (60 s rounds, and between them every policy also "
                "decides when a job arrives or ends, as Slurm's scheduler acts; hpcsched runs its admission pass then)",
                " --timing arrival"),
}


def markdown(done: dict[str, Any], timing: str = "rounds") -> tuple[str, dict[str, Any]]:
    all_cells = cells()
    title, how, flag = TIMING_TEXT[timing]
    lines = [
        f"# Held-out workloads: hpcsched against the faithful Pollux baseline{title}",
        "",
        f"16 nodes x 4 GPUs, {how}, the information layer (fitted step-time models, "
        "measured noise, declared work, growth cap). Tuned on workloads 1-4 at 1.0x; reported here: "
        "workloads 5-8 at each load and three Philly samples (module docstring of "
        "`benchmarks/heldout.py`). `30`: one deterministic run per cell; `slurm`: seeds "
        f"{', '.join(map(str, SLURM_SEEDS))}. Ratio: hpcsched's avg JCT / Pollux's per cell, mean "
        f"(min-max) over the cells. Regenerate: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/heldout.py --jobs 2{flag}`.",
        "",
        "| group | restart | cells | Pollux avg JCT (s) | hpcsched avg JCT (s) | ratio mean (min-max) | "
        "worst FTF Pollux / hpcsched | restarts/job Pollux / hpcsched |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    summaries: dict[str, Any] = {}
    for group in groups():
        for cost in TARGETS:
            pairs = _pairs(done, [c for c in all_cells if c[0] == group and c[2] == cost])
            if not pairs:
                lines.append(f"| {group} | {cost} | 0 | not run | | | | |")
                continue
            s = summaries[f"{group}/{cost}"] = summary(pairs)
            lines.append(f"| {group} | {cost} | {s['cells']} | {s['pollux_jct']:,.0f} | {s['hpcsched_jct']:,.0f} | "
                         f"{s['ratio_mean']:.3f} ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) | "
                         f"{s['pollux_worst_ftf']:.2f} / {s['hpcsched_worst_ftf']:.2f} | "
                         f"{s['pollux_restarts']:.2f} / {s['hpcsched_restarts']:.2f} |")
    lines += ["", "Targets, over every held-out cell that both policies ran:", "",
              "| target | measured | met |", "|---|---:|---|"]
    for cost, most in TARGETS.items():
        pairs = _pairs(done, [c for c in all_cells if c[2] == cost])
        if not pairs:
            continue
        s = summaries[f"all/{cost}"] = summary(pairs)
        checks = [
            (f"{cost}: avg JCT <= {most:.2f}x Pollux (mean of cell ratios)", f"{s['ratio_mean']:.3f}x", s["ratio_mean"] <= most),
            (f"{cost}: worst FTF <= {WORST_FTF}", f"{s['hpcsched_worst_ftf']:.2f} (Pollux {s['pollux_worst_ftf']:.2f})",
             s["hpcsched_worst_ftf"] <= WORST_FTF),
            (f"{cost}: restarts/job <= {RESTARTS_PER_JOB:g}", f"{s['hpcsched_restarts']:.2f}",
             s["hpcsched_restarts"] <= RESTARTS_PER_JOB),
        ]
        lines += [f"| {what} | {value} | {'yes' if ok else 'NO'} |" for what, value, ok in checks]
    lines += ["", "As the daemon and the coordinator act today (`hpcsched-nostop`: a running job the allocator "
              "would stop keeps its minimum, and the newcomers that no longer fit wait; docs/allocator.md, "
              "Limitations), against the same Pollux cells:", "",
              "| group | restart | cells | hpcsched-nostop avg JCT (s) | ratio mean (min-max) | worst FTF | restarts/job |",
              "|---|---|---:|---:|---|---:|---:|"]
    for group in [*groups(), "all"]:
        for cost in TARGETS:
            wanted = groups() if group == "all" else [group]
            pairs = _pairs(done, [c for c in all_cells if c[0] in wanted and c[2] == cost], AS_DAEMON)
            if not pairs:
                continue
            s = summaries[f"nostop/{group}/{cost}"] = summary(pairs)
            lines.append(f"| {group} | {cost} | {s['cells']} | {s['hpcsched_jct']:,.0f} | {s['ratio_mean']:.3f} "
                         f"({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) | {s['hpcsched_worst_ftf']:.2f} | "
                         f"{s['hpcsched_restarts']:.2f} |")
    ran = sum(1 for c in all_cells for p in POLICIES if key(p, c) in done)
    cpu = sum(r["cpu_s"] for r in done.values())
    lines += ["", f"Runs on record: {ran} of {len(all_cells) * len(POLICIES)}; {cpu:,.0f} s of CPU.", ""]
    return "\n".join(lines), summaries


def write(done: dict[str, Any], timing: str = "rounds") -> str:
    text, summaries = markdown(done, timing)
    write_results(TIMINGS[timing], {"cells": done, "summaries": summaries, "python": platform.python_version()}, text, echo=False)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", action="append", choices=POLICIES, help="run only this policy (repeatable)")
    parser.add_argument("--group", action="append", choices=groups(), help="run only this group (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="simulations run at once")
    parser.add_argument("--fresh", action="store_true", help="forget the cells of earlier runs")
    parser.add_argument("--timing", choices=TIMINGS, default="rounds",
                        help="rounds: 60 s rounds only (default); arrival: also on every arrival and job end")
    args = parser.parse_args()
    timing = args.timing
    if args.fresh:
        write({}, timing)
    on_arrival = timing == "arrival"
    todo = [(p, c, on_arrival) for p in (args.policy or POLICIES) for c in cells() if c[0] in (args.group or groups())]
    todo.sort(key=lambda item: item[1][0] == "2.0x")  # the long 2.0x cells last
    with Pool(max(1, args.jobs)) as pool:
        for name, result in pool.imap_unordered(run, todo):
            print(f"{name}: {result['avg_jct']:,.0f} s, worst FTF {result['worst_ftf']:.2f}, "
                  f"{result['restarts_per_job']:.2f} restarts/job ({result['cpu_s']} s)", flush=True)
            write(load_previous(timing) | {name: result}, timing)  # merged with the disk: several runs may go at once
    print(write(load_previous(timing), timing))


if __name__ == "__main__":
    main()
