"""Benchmark (the claim of job-level scheduling): one architecture search run twice on the local
cluster, with a fixed batch size and with adaptive batch size, learning rate and accumulation.

The search is `hpcsched sweep run examples/digits_nas.py` over channels x depth (6 trials, one
node each, same seeds). For each trial: the training time from its first step to the first
epoch whose validation accuracy reaches --target, and its final validation accuracy. The two
sweeps run one after the other, in alternating order over --repeats rounds; per trial the
median over rounds is reported. Container start and queueing are left out (measured from the
job's "start" progress line), since they are the same for both.

Run as root after `make setup`:  .venv/bin/python benchmarks/nas_adaptive.py [--repeats 3]
Writes benchmarks/results/nas_adaptive.{md,json} and docs/images/nas_adaptive.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import SITE, USER, as_user, job_dir, workspace, write_results

REPO = Path(__file__).resolve().parents[1]
PLOT = REPO / "docs" / "images" / "nas_adaptive.png"
GRID = ["--grid", "channels=8,16,32", "--grid", "depth=1,2"]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
MODES = {"fixed": [], "adaptive": ["--adaptive", "--max-batch-size", "512"]}


def trial_result(progress: Path, target: float) -> dict[str, Any]:
    """Time to the target accuracy, final accuracy and batch changes, from one trial's progress lines."""
    records = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
    start = next(r["time"] for r in records if r["event"] == "start")
    curve = [(r["time"] - start, r["metrics"]["val_acc"]) for r in records if r["event"] == "metrics"]
    done = next((r["time"] - start for r in records if r["event"] == "done"), None)
    reached = next((t for t, acc in curve if acc >= target), None)
    batches = [r["global_batch"] for r in records if r["event"] == "adapt"]
    last = records[-1] if records else {}
    noise = {"grad_sqr": last["grad_sqr"], "grad_var": last["grad_var"]} if last.get("grad_sqr") is not None else None
    return {"time_to_target": reached, "final_acc": curve[-1][1] if curve else None, "train_time": done,
            "curve": curve, "batches": batches, "final_noise": noise}  # fmt: skip


def run_sweep(mode: str, round_: int, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    root = workspace(f"nas-{mode}-{round_}")
    for name in ("digits_nas.py", "digits_cnn.py"):
        (root / "work" / name).write_text((REPO / "examples" / name).read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(root / "work")], check=True)
    hs = [str(SITE / "bin" / "hpcsched")]
    as_user(hs + ["daemon", "start"], root)
    try:
        fixed_args = ["--epochs", str(args.epochs), "--batch-size", "16", "--lr", "1e-3", "--seed", "0",
                      "--checkpoint-every", "100000", *MODES[mode]]  # fmt: skip
        as_user(hs + ["sweep", "run", "digits_nas.py", "--name", "nas", *GRID, "--nodes", "1", "--", *fixed_args], root)
        while True:
            trials = json.loads(as_user(hs + ["sweep", "status", "nas", "--json"], root).stdout)["trials"]
            if all(t["state"] in FINAL for t in trials):
                break
            time.sleep(2)
    finally:
        as_user(hs + ["daemon", "stop"], root)
    out = {}
    for t in trials:
        key = f"c{t['params']['channels']}-d{t['params']['depth']}"
        if t["state"] != "COMPLETED":
            raise SystemExit(f"{mode} trial {key} (job {t['job_id']}) ended {t['state']}")
        out[key] = trial_result(job_dir(root, int(t["job_id"])) / "progress.jsonl", args.target)
    print(f"round {round_} {mode}: " + ", ".join(f"{k} {v['time_to_target']}" for k, v in out.items()), file=sys.stderr)
    return out


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if len(known) == len(values) and known else None


def summarise(rounds: list[dict[str, dict[str, dict[str, Any]]]], target: float) -> tuple[dict[str, Any], str]:
    keys = sorted(rounds[0]["fixed"])
    rows, totals = [], {"fixed": [], "adaptive": []}
    for r in rounds:
        for mode in totals:
            times = [r[mode][k]["time_to_target"] for k in keys]
            totals[mode].append(sum(times) if all(t is not None for t in times) else None)
    ratios = [a / f for a, f in zip(totals["adaptive"], totals["fixed"], strict=True) if a and f]
    lines = [
        f"# Adaptive vs fixed batch: one architecture search on the local cluster (target val_acc {target})",
        "",
        f"6 trials (channels 8/16/32 x depth 1/2), 1 node each, seed 0, {len(rounds)} rounds; per trial the median.",
        "",
        "| trial | fixed: time to target (s) | adaptive: time to target (s) | ratio | fixed: final acc | "
        "adaptive: final acc | adaptive batches |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for k in keys:
        f = median([r["fixed"][k]["time_to_target"] for r in rounds])
        a = median([r["adaptive"][k]["time_to_target"] for r in rounds])
        fa = statistics.median(r["fixed"][k]["final_acc"] for r in rounds)
        aa = statistics.median(r["adaptive"][k]["final_acc"] for r in rounds)
        batches = rounds[0]["adaptive"][k]["batches"]
        ratio = f"{a / f:.2f}" if a is not None and f else "-"
        fmt = lambda v: f"{v:.2f}" if v is not None else "not reached"  # noqa: E731
        lines.append(f"| {k} | {fmt(f)} | {fmt(a)} | {ratio} | {fa:.3f} | {aa:.3f} | {' → '.join(map(str, batches))} |")
        rows.append({"trial": k, "fixed_time_to_target": f, "adaptive_time_to_target": a, "fixed_final_acc": fa,
                     "adaptive_final_acc": aa, "adaptive_batches": batches})  # fmt: skip
    acc_gap = max(abs(r["fixed_final_acc"] - r["adaptive_final_acc"]) for r in rows)
    mean_gap = statistics.mean(r["adaptive_final_acc"] - r["fixed_final_acc"] for r in rows)
    ratio = statistics.median(ratios) if ratios else None
    lines += [
        "",
        "| target | measured | met |",
        "|---|---:|---|",
        f"| whole search, adaptive time to target <= 0.7x fixed (median of rounds) | "
        f"{ratio:.2f}x | {'yes' if ratio is not None and ratio <= 0.7 else 'NO'} |" if ratio is not None else
        "| whole search, adaptive time to target <= 0.7x fixed | not reached | NO |",
        f"| final accuracy within 1 pp (mean difference adaptive - fixed) | {100 * mean_gap:+.2f} pp | "
        f"{'yes' if abs(mean_gap) <= 0.01 else 'NO'} |",
        f"| largest per-trial final accuracy difference | {100 * acc_gap:.2f} pp | (for information) |",
        "",
        f"Per round, adaptive/fixed sum of times to target: {', '.join(f'{x:.2f}' for x in ratios)}.",
        "",
        "Reproduce (as root, after `make setup`): `.venv/bin/python benchmarks/nas_adaptive.py "
        f"--repeats {len(rounds)} --target {target}`",
        "",
    ]  # fmt: skip
    return {"rows": rows, "ratio_per_round": ratios, "ratio": ratio, "mean_acc_gap": mean_gap, "rounds": rounds}, "\n".join(lines)


def plot(rounds: list[dict[str, dict[str, dict[str, Any]]]], rows: list[dict[str, Any]], target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    keys = [r["trial"] for r in rows]
    x = range(len(keys))
    left.bar([i - 0.2 for i in x], [r["fixed_time_to_target"] or 0 for r in rows], 0.4, label="fixed batch 16")
    left.bar([i + 0.2 for i in x], [r["adaptive_time_to_target"] or 0 for r in rows], 0.4, label="adaptive")
    left.set_xticks(list(x), keys)
    left.set_ylabel(f"seconds of training to val_acc >= {target}")
    left.set_title("Time to target accuracy per trial (median of rounds)")
    left.legend()
    for i, k in enumerate(keys):
        color = f"C{i}"
        for mode, style in (("fixed", "--"), ("adaptive", "-")):
            curve = rounds[0][mode][k]["curve"]
            right.plot([t for t, _ in curve], [a for _, a in curve], style, color=color, label=f"{k} {mode}")
    right.axhline(target, color="grey", lw=0.8)
    right.set_ylim(0.5, 1.0)
    right.set_xlabel("seconds since the trial's first step")
    right.set_ylabel("validation accuracy")
    right.set_title("Validation accuracy (round 1; dashed: fixed, solid: adaptive)")
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    rounds = []
    for round_ in range(1, args.repeats + 1):
        order = ["fixed", "adaptive"] if round_ % 2 else ["adaptive", "fixed"]
        rounds.append({mode: run_sweep(mode, round_, args) for mode in order})
    data, table = summarise(rounds, args.target)
    plot(rounds, data["rows"], args.target)
    write_results("nas_adaptive", data, table)


if __name__ == "__main__":
    main()
