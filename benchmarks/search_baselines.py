"""Benchmark (issue 16, item 5): one architecture search with adaptive batch sizing against EVERY
fixed batch of a grid, the learning rate scaled as a user would.

Each trial of the search (examples/digits_nas.py, channels x depth) is trained once per fixed batch
of --batches, with the learning rate scaled from the script's reference (batch 16, lr 1e-3, Adam)
by the square-root rule (--lr-rule; sqrt is the usual rule for Adam and the one the adaptive mode
applies itself, linear gives Adam learning rates that diverge at the top of the grid), and once
with --adaptive (starting at the reference batch and learning rate, no tuning; largest batch the
top of the grid). The task is made harder with --image-size/--augment/--noise (WORKLOADS) so that a
trial trains for about a minute instead of seconds.

``--workload fixed-step`` adds ``--step-delay`` to every micro-batch: a step then costs about the
same at every batch size, as on an accelerator that a small batch leaves idle (the CPU runs' step
time grows with the batch). Its trials take minutes, mostly asleep, so ``--parallel N`` can run N
configurations at once without their step times disturbing each other much.

Trials run one after the other as plain local processes, one CPU thread each, with
HPCSCHED_JOB_DIR set: the ElasticTrainer and its AdaptiveBatch are the same code a cluster job runs,
and each run's progress.jsonl gives its training time (from the trainer's "start" line, so imports
and data preparation are left out) to the first epoch with val_acc >= --target, and its final val_acc.
The configurations of one (trial, seed) run back to back, in an order rotated per (trial, seed).

    .venv/bin/python benchmarks/search_baselines.py            # full run (about 35 min on 2 cores)
    .venv/bin/python benchmarks/search_baselines.py --quick    # first pass: one trial, one seed
    .venv/bin/python benchmarks/search_baselines.py --summarise-only   # re-score the last run's log
    .venv/bin/python benchmarks/search_baselines.py --workload fixed-step --parallel 4 --target auto   # about 50 minutes

Writes benchmarks/results/search_baselines{,-fixed-step}.{md,json}; each run is appended to a log
under /tmp/hpcsched-bench/search_baselines/ as it ends.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import trial_shape, write_results
from nas_adaptive import trial_result

REPO = Path(__file__).resolve().parents[1]
LOGS = Path("/tmp/hpcsched-bench/search_baselines")
WORKLOADS = {
    "cpu": ["--image-size", "24", "--augment", "8", "--noise", "0.3"],
    "fixed-step": ["--image-size", "8", "--augment", "24", "--noise", "0.2", "--step-delay", "0.03"],
}
REF_BATCH, REF_LR = 16, 1e-3
Runs = list[dict[str, Any]]


def search_results(workload: str) -> str:
    """The results file's name (without suffix) of a workload's full run."""
    return "search_baselines" + ("" if workload == "cpu" else f"-{workload}")


def fixed_lr(batch: int, rule: str) -> float:
    """The learning rate a user would give a fixed ``batch``, scaled from the reference."""
    ratio = batch / REF_BATCH
    return REF_LR * (ratio if rule == "linear" else math.sqrt(ratio))


def configurations(batches: list[int], rule: str) -> dict[str, list[str]]:
    """Name -> digits_nas.py arguments of every fixed batch and of the adaptive mode."""
    out = {f"fixed-{b}": ["--batch-size", str(b), "--lr", f"{fixed_lr(b, rule):.6g}"] for b in batches}
    out["adaptive"] = ["--batch-size", str(REF_BATCH), "--lr", str(REF_LR), "--adaptive", "--max-batch-size", str(max(batches))]
    out["adaptive-sqrt"] = [*out["adaptive"], "--efficiency", "sqrt"]  # AdaptiveBatch(efficiency="sqrt")
    for name in ("adaptive", "adaptive-sqrt"):  # the probe that splits a step in two (the default before "pairs")
        out[f"{name}-split"] = [*out[name], "--noise-probe", "split"]
    return out


def run_one(trial: str, seed: int, name: str, extra: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Train one configuration of one trial as a local process; its outcome from progress.jsonl."""
    channels, depth = trial_shape(trial)
    argv = [sys.executable, str(REPO / "examples" / "digits_nas.py"), "--channels", str(channels), "--depth", str(depth),
            "--epochs", str(args.epochs), "--seed", str(seed), "--checkpoint-every", "1000000", *WORKLOADS[args.workload],
            *extra]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="search-") as job_dir:
        env = {**os.environ, "HPCSCHED_JOB_DIR": job_dir, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"{trial} seed {seed} {name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        result = trial_result(Path(job_dir) / "progress.jsonl", 0.85 if args.target == "auto" else float(args.target))
    return {"trial": trial, "seed": seed, "config": name, "argv": argv[2:], **result}


def runs_log(args: argparse.Namespace) -> Path:
    return LOGS / f"runs-{args.workload}.jsonl"


def run_all(args: argparse.Namespace) -> Runs:
    """Every configuration of every (trial, seed), ``args.parallel`` at a time, in an order rotated
    per (trial, seed); each run is logged as it ends."""
    configs = configurations(args.batches, args.lr_rule)
    names = list(configs)
    log = runs_log(args)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    todo = []
    for s, seed in enumerate(args.seeds):
        for t, trial in enumerate(args.trials):
            shift = (s * len(args.trials) + t) % len(names)
            todo += [(trial, seed, name) for name in names[shift:] + names[:shift]]
    lock = threading.Lock()

    def one(item: tuple[str, int, str]) -> dict[str, Any]:
        trial, seed, name = item
        run = run_one(trial, seed, name, configs[name], args)
        with lock, log.open("a") as out:
            out.write(json.dumps(run) + "\n")
        print(f"{trial} seed {seed} {name}: to target {run['time_to_target']} s, final {run['final_acc']:.3f}, "
              f"trained {run['train_time']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
        return run

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        return list(pool.map(one, todo))


def time_to(run: dict[str, Any], target: float) -> float:
    """Seconds to the first epoch at ``target`` (infinite when never reached)."""
    return next((t for t, acc in run["curve"] if acc >= target), math.inf)


def targets_of(runs: Runs, spec: str) -> dict[str, float]:
    """trial -> the val_acc to reach. ``auto``: per trial, the highest val_acc that every fixed-batch run
    of it reached, floored to 0.01 (chosen without looking at the adaptive runs); else one number."""
    trials = sorted({r["trial"] for r in runs})
    if spec != "auto":
        return dict.fromkeys(trials, float(spec))
    reached = lambda trial: min(max(a for _, a in r["curve"]) for r in runs  # noqa: E731
                                if r["trial"] == trial and r["config"].startswith("fixed-"))  # fmt: skip
    return {t: math.floor(100 * reached(t) + 1e-9) / 100 for t in trials}


def table_of(runs: Runs, targets: dict[str, float]) -> dict[str, dict[str, dict[int, dict[str, float]]]]:
    """trial -> config -> seed -> {"time", "acc"}."""
    out: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    for r in runs:
        cell = {"time": time_to(r, targets[r["trial"]]), "acc": r["final_acc"]}
        out.setdefault(r["trial"], {}).setdefault(r["config"], {})[r["seed"]] = cell
    return out


def complete_seeds(runs: Runs) -> Runs:
    """The runs of the seeds that ran every configuration of every trial (an interrupted run's log)."""
    cells = {(r["trial"], r["config"]) for r in runs}
    seeds = {r["seed"] for r in runs}
    done = {s for s in seeds if cells <= {(r["trial"], r["config"]) for r in runs if r["seed"] == s}}
    return [r for r in runs if r["seed"] in done]


def mean(values: list[float]) -> float:
    return statistics.mean(values) if all(math.isfinite(v) for v in values) else math.inf


def fmt(seconds: float) -> str:
    return f"{seconds:.1f}" if math.isfinite(seconds) else "not reached"


def ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.inf


def search_totals(table: dict[str, Any], seeds: list[int]) -> dict[str, list[float]]:
    """config -> per seed, the whole search's time to target (sum over trials)."""
    configs = sorted(next(iter(table.values())), key=lambda c: int(c.split("-")[1]) if c.startswith("fixed-") else math.inf)
    return {c: [sum(table[t][c][s]["time"] for t in table) for s in seeds] for c in configs}


def summarise(runs: Runs, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    runs = complete_seeds(runs)
    targets = targets_of(runs, args.target)
    table = table_of(runs, targets)
    seeds = sorted({r["seed"] for r in runs})
    fixed = [c for c in next(iter(table.values())) if c.startswith("fixed-")]
    fixed.sort(key=lambda c: int(c.split("-")[1]))
    shown = ", ".join(f"{t} {v:.2f}" for t, v in targets.items()) if args.target == "auto" else args.target
    variants = sorted({c for c in next(iter(table.values())) if c.startswith("adaptive")})
    lines = [f"# Search: adaptive batch vs every fixed batch ({args.lr_rule} lr scaling), target val_acc {shown}", "",
             *intro(args, seeds), ""]  # fmt: skip
    totals = search_totals(table, seeds)
    scored = {}
    for name in variants:
        rows, trial_lines = per_trial(table, fixed, seeds, name)
        whole = whole_search(totals, fixed, rows, seeds, name, list_configs=name == variants[0])
        heading = "" if name == variants[0] else f" ({name})"
        lines += [f"## Per trial{heading}: mean time to target over seeds (s), final val_acc", "", *trial_lines, "",
                  *whole.pop("lines"), ""]  # fmt: skip
        scored[name] = {"per_trial": rows, "whole_search": whole}
    ceiling = min(max(acc for _, acc in r["curve"]) for r in runs if r["config"].startswith("fixed-"))
    lines += [f"Highest val_acc that every fixed-batch run reached: {ceiling:.3f}.", "",
              *epochs_lines(runs, targets, [*fixed, *variants]), "", *batches_lines(runs), "",
              "Reproduce: `" + command(args) + "`", ""]  # fmt: skip
    rows, whole = scored[variants[0]]["per_trial"], scored[variants[0]]["whole_search"]
    data = {"date": args.date, "command": command(args), "target": args.target, "targets": targets, "lr_rule": args.lr_rule,
            "workload": WORKLOADS[args.workload], "workload_name": args.workload, "parallel": args.parallel,
            "epochs": args.epochs, "seeds": seeds, "per_trial": rows, "whole_search": whole, "variants": scored,
            "runs": runs}  # fmt: skip
    return json.loads(json.dumps(data, default=str).replace("Infinity", "null")), "\n".join(lines)


def per_trial(table: dict[str, Any], fixed: list[str], seeds: list[int], name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Per trial: every fixed batch's and adaptive variant ``name``'s mean time to target and accuracy."""
    lines = ["| trial | " + " | ".join(c.replace("fixed-", "fixed ") for c in fixed) + f" | {name} | {name} / best fixed "
             f"| {name} / median fixed | best fixed final acc | {name} final acc |",
             "|---|" + "---:|" * (len(fixed) + 5)]  # fmt: skip
    rows = []
    for trial, by_config in table.items():
        means = {c: mean([by_config[c][s]["time"] for s in seeds]) for c in [*fixed, name]}
        accs = {c: statistics.mean(by_config[c][s]["acc"] for s in seeds) for c in [*fixed, name]}
        best = min(means[c] for c in fixed)
        med = statistics.median(means[c] for c in fixed)
        best_acc = max(accs[c] for c in fixed)
        rows.append({"trial": trial, "mean_time": means, "mean_final_acc": accs, "best_fixed": best, "median_fixed": med,
                     "best_fixed_acc": best_acc, "acc_gap_pp": 100 * (accs[name] - best_acc)})  # fmt: skip
        cells = " | ".join(f"{fmt(means[c])} ({accs[c]:.3f})" for c in fixed)
        lines.append(f"| {trial} | {cells} | {fmt(means[name])} ({accs[name]:.3f}) | {ratio(means[name], best):.2f} | "
                     f"{ratio(means[name], med):.2f} | {best_acc:.3f} | {accs[name]:.3f} |")  # fmt: skip
    return rows, lines


Totals = dict[str, list[float]]


def whole_search(totals: Totals, fixed: list[str], rows: list[dict[str, Any]], seeds: list[int], name: str = "adaptive",
                 list_configs: bool = True) -> dict[str, Any]:  # fmt: skip
    """The whole search: adaptive variant ``name`` vs the best single fixed batch, the per-trial oracle and the
    median choice (``list_configs``: with the table of every configuration's time)."""
    means = {c: mean(v) for c, v in totals.items()}
    best_config = min(fixed, key=lambda c: means[c])
    oracle = sum(r["best_fixed"] for r in rows)
    median = statistics.median(means[c] for c in fixed)
    adaptive = means[name]
    per_seed_best = [ratio(totals[name][i], min(totals[c][i] for c in fixed)) for i in range(len(seeds))]
    per_seed_median = [ratio(totals[name][i], statistics.median(totals[c][i] for c in fixed)) for i in range(len(seeds))]
    worst_gap = min(r["acc_gap_pp"] for r in rows)
    checks = [
        (f"{name} <= 1.0x the best single fixed batch in hindsight", ratio(adaptive, means[best_config]), 1.0),
        (f"{name} <= 1.0x the best fixed batch per trial in hindsight", ratio(adaptive, oracle), 1.0),
        (f"{name} <= 0.7x the median fixed choice", ratio(adaptive, median), 0.7),
    ]
    spread = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}"  # noqa: E731
    lines = []
    if list_configs:
        lines += ["## Whole search (sum over trials; mean over seeds)", "",
                  "| configuration | time to target (s) | per seed |", "|---|---:|---|"]  # fmt: skip
        lines += [f"| {c} | {fmt(means[c])} | {', '.join(fmt(x) for x in v)} |" for c, v in totals.items()]
        lines += ["", f"Best single fixed batch in hindsight: {best_config}; best per trial (oracle): {fmt(oracle)} s; "
                  f"median fixed choice: {fmt(median)} s.", ""]  # fmt: skip
    lines += [f"Whole search, {name}:", "", "| target | measured | met |", "|---|---:|---|"]
    for label, value, limit in checks:
        lines.append(f"| {label} | {value:.2f}x | {'yes' if value <= limit else 'NO'} |")
    lines.append(f"| final accuracy within 1 point of the best fixed batch (worst trial, {name} - best) | "
                 f"{worst_gap:+.2f} pp | {'yes' if worst_gap >= -1.0 else 'NO'} |")  # fmt: skip
    lines += ["", f"Spread over seeds, {name} / best fixed batch of that seed: {spread(per_seed_best)}; "
              f"{name} / median fixed of that seed: {spread(per_seed_median)}."]  # fmt: skip
    return {"mean_time": means, "per_seed": totals, "best_single_fixed": best_config, "per_trial_oracle": oracle,
            "median_fixed": median, "checks": {label: value for label, value, _ in checks}, "worst_acc_gap_pp": worst_gap,
            "per_seed_ratio_best": per_seed_best, "per_seed_ratio_median": per_seed_median, "lines": lines}  # fmt: skip


def epochs_lines(runs: Runs, targets: dict[str, float], configs: list[str]) -> list[str]:
    """Epochs each configuration needed to its trial's target (mean over seeds), and the statistical
    efficiency that implies: epochs at the smallest batch / epochs at this one (samples per epoch
    are the same at every batch, so it is the ratio of the samples each needed)."""
    lines = ["## Epochs to target (mean over seeds) and the efficiency they imply", "",
             "| trial | " + " | ".join(configs) + " |", "|---|" + "---:|" * len(configs)]  # fmt: skip
    for trial in targets:
        epochs = {}
        for c in configs:
            per_seed = [next((i + 1 for i, (_, a) in enumerate(r["curve"]) if a >= targets[trial]), math.inf)
                        for r in runs if r["trial"] == trial and r["config"] == c]  # fmt: skip
            epochs[c] = mean(per_seed)
        base = epochs[configs[0]]
        cells = [f"{epochs[c]:.1f} ({ratio(base, epochs[c]):.2f})" if math.isfinite(epochs[c]) else "not reached"
                 for c in configs]  # fmt: skip
        lines.append(f"| {trial} | " + " | ".join(cells) + " |")
    return [*lines, "", f"In brackets: epochs with {configs[0]} / epochs with the configuration."]


def batches_lines(runs: Runs) -> list[str]:
    lines = ["## Adaptive batches chosen (global batch after each re-choice)", ""]
    for r in runs:
        if r["config"].startswith("adaptive"):
            noise = r.get("final_noise") or {}
            scale = f" (noise scale at the end {noise['grad_var'] / noise['grad_sqr']:.0f})" if noise.get("grad_sqr") else ""
            variant = "" if r["config"] == "adaptive" else f" ({r['config']})"
            lines.append(f"- {r['trial']} seed {r['seed']}{variant}: {' → '.join(map(str, r['batches']))}{scale}")
    return lines


def intro(args: argparse.Namespace, seeds: list[int]) -> list[str]:
    scaled = f"B/{REF_BATCH}" if args.lr_rule == "linear" else f"sqrt(B/{REF_BATCH})"
    when = "Re-scored" if args.summarise_only else "Run"
    return [
        f"{when} {args.date}. examples/digits_nas.py {' '.join(WORKLOADS[args.workload])} --epochs {args.epochs}, trials "
        f"{', '.join(args.trials)}, seeds {', '.join(map(str, seeds))}. Fixed batches {', '.join(map(str, args.batches))} "
        f"with lr = {REF_LR} x {scaled} (Adam); adaptive starts at batch {REF_BATCH}, lr {REF_LR}, "
        f"max batch {max(args.batches)}, no tuning.",
        "Each run is a local process with one CPU thread on a shared 2-core machine (not on the cluster); the "
        "adaptive mode is hpcsched's runtime library (ElasticTrainer + AdaptiveBatch), as in a cluster job. Time "
        "to target: training seconds from the trainer's start line to the first epoch with val_acc >= target "
        "(validation included); 'not reached' counts as infinite.",
    ]  # fmt: skip


def command(args: argparse.Namespace) -> str:
    extra = f" --workload {args.workload} --parallel {args.parallel}" if args.workload != "cpu" or args.parallel > 1 else ""
    return ("nice -n 10 .venv/bin/python benchmarks/search_baselines.py " + ("--quick" if args.quick else
            f"--trials {' '.join(args.trials)} --seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs}")
            + f" --target {args.target} --lr-rule {args.lr_rule}" + extra)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", nargs="+", default=["c8-d2", "c16-d2"], help="cC-dD: channels and depth")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[16, 32, 64, 128, 256, 512])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--target", default="0.85", help="val_acc to reach, or 'auto' (per trial: see targets_of)")
    parser.add_argument("--lr-rule", choices=("sqrt", "linear"), default="sqrt")
    parser.add_argument("--quick", action="store_true", help="one trial (c16-d2), seed 9 (not one of the full run's)")
    parser.add_argument("--summarise-only", action="store_true", help="re-score the runs logged by the last run")
    parser.add_argument("--workload", choices=tuple(WORKLOADS), default="cpu", help="the task's options (module docstring)")
    parser.add_argument("--parallel", type=int, default=1, help="configurations run at once (for --workload fixed-step)")
    args = parser.parse_args()
    if args.target != "auto":
        try:
            float(args.target)
        except ValueError:
            parser.error(f"--target must be a number or 'auto', got {args.target!r}")
    if args.parallel < 1:
        parser.error(f"--parallel must be at least 1, got {args.parallel}")
    if args.quick:
        args.trials, args.seeds = ["c16-d2"], [9]
    for trial in args.trials:
        try:
            trial_shape(trial)
        except ValueError as error:
            parser.error(str(error))
    args.date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = [json.loads(line) for line in runs_log(args).read_text().splitlines()] if args.summarise_only else run_all(args)
    data, table = summarise(runs, args)
    write_results(search_results(args.workload) + ("-quick" if args.quick else ""), data, table)


if __name__ == "__main__":
    main()
