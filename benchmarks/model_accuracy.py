"""How well the step-time model predicts configurations it was not fitted on, and how fast the
goodput search is. A script, not a test:

    .venv/bin/python benchmarks/model_accuracy.py [--data DIR]

Data: the Pollux simulator's profiles of six models on nodes with 4x T4 GPUs
(``traces/<model>/placements.csv``: up to 4 nodes and 16 GPUs; ``scalability.csv``: 6 to 16 nodes
and up to 64 GPUs). Error: mean absolute percentage error (MAPE) of predicted step time on the
held-out rows. Each split is drawn with seeds 0-4; the table shows the median over the seeds.

* random half: a seeded random 50% of all rows to fit, the other 50% to test (interpolation);
* random half, step time only: the same, but the fit is not given the profiles' compute time
  (step minus sync time), only what any job can time: the whole step;
* extrapolation: a seeded random 50% of placements.csv (<= 4 nodes) to fit, all of
  scalability.csv (6-16 nodes, up to 4x more GPUs than ever fitted) to test;
* in-sample: fit and test on all rows, the floor the model's form allows on this data.

Writes benchmarks/results/model_accuracy.md and .json and prints both.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits, best_config, speedup
from hpcsched.models.profiles import observations_from_placements, observations_from_scalability
from hpcsched.models.throughput import Observation, ThroughputParams, predict_step_time
from hpcsched.models.throughput_fit import fit
from hpcsched.simulator.data import data_dir

MODELS = ("bert", "cifar10", "deepspeech2", "imagenet", "ncf", "yolov3")
SEEDS = (0, 1, 2, 3, 4)
RESULTS = Path(__file__).resolve().parent / "results"
Split = Callable[[int], tuple[list[Observation], list[Observation]]]


def mape(params: ThroughputParams, observations: Sequence[Observation]) -> float:
    def column(name: str) -> np.ndarray:
        return np.array([getattr(o, name) for o in observations])

    predicted = predict_step_time(params, column("num_nodes"), column("num_replicas"), column("local_bsz"), column("accum_steps"))
    measured = column("step_time")
    return float(np.mean(np.abs(predicted - measured) / measured))


def half(rows: list[Observation], seed: int) -> tuple[list[Observation], list[Observation]]:
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = len(rows) // 2
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def splits(placements: list[Observation], scalability: list[Observation]) -> dict[str, Split]:
    rows = placements + scalability
    step_only = [dataclasses.replace(o, compute_time=None) for o in rows]
    return {
        "random half": lambda seed: half(rows, seed),
        "random half, step time only": lambda seed: half(step_only, seed),
        "extrapolation": lambda seed: (half(placements, seed)[0], scalability),
        "in-sample": lambda seed: (rows, rows),
    }


def accuracy(data: Path) -> dict[str, dict[str, object]]:
    report: dict[str, dict[str, object]] = {}
    for model in MODELS:
        placements = observations_from_placements((data / model / "placements.csv").read_text())
        scalability = observations_from_scalability((data / model / "scalability.csv").read_text())
        entry: dict[str, object] = {"rows": len(placements) + len(scalability)}
        for name, split in splits(placements, scalability).items():
            seeds = SEEDS[:1] if name == "in-sample" else SEEDS
            errors = [mape(fit(train), test) for train, test in map(split, seeds)]
            entry[name] = {"median": statistics.median(errors), "per_seed": errors}
        rows = placements + scalability
        entry["fit_ms_all_rows"] = statistics.median(timeit.repeat(functools.partial(fit, rows), number=1, repeat=5)) * 1e3
        report[model] = entry
    return report


def timing(data: Path) -> dict[str, float]:
    """Microseconds per call, median of 7 repeats: cifar10's fitted model, the noise it
    measured at batch 128 after 10 epochs, M0 = 128, up to 1024 per GPU, global <= 65536."""
    rows = observations_from_placements((data / "cifar10" / "placements.csv").read_text())
    params = fit(rows)
    validation = (data / "cifar10" / "validation-128.csv").read_text().splitlines()
    sqr, var = (float(v) for v in validation[10].split(",")[3:5])
    noise = GradientNoise.from_batch(sqr, var, 128)
    nodes = np.repeat(np.arange(1, 17), 4)
    replicas = nodes * np.tile(np.arange(1, 5), 16)
    result: dict[str, float] = {}
    for accum in (0, 7):
        limits = BatchLimits(128, 65536, 1024, max_accum_steps=accum)
        calls: dict[str, Callable[[], object]] = {
            f"best_config, max_accum_steps={accum}": functools.partial(best_config, params, noise, 4, 16, limits),
            f"speedup of 64 allocations, max_accum_steps={accum}": functools.partial(
                speedup, params, noise, nodes, replicas, limits
            ),
        }
        for name, call in calls.items():
            runs = timeit.repeat(call, number=200, repeat=7)
            result[name] = statistics.median(runs) / 200 * 1e6
    return result


def markdown(report: dict[str, dict[str, object]], timings: dict[str, float]) -> str:
    columns = ["random half", "random half, step time only", "extrapolation", "in-sample"]
    lines = [
        "# Step-time model accuracy on the Pollux profiles",
        "",
        "MAPE of predicted step time on held-out rows, median of seeds 0-4 (see benchmarks/model_accuracy.py for the splits).",
        "",
        "| model | rows | " + " | ".join(columns) + " | fit all rows (ms) |",
        "|---|---:|" + "---:|" * (len(columns) + 1),
    ]
    for model, entry in report.items():
        cells = [f"{entry[c]['median'] * 100:.1f}%" for c in columns]  # type: ignore[index]
        fit_ms = f"{entry['fit_ms_all_rows']:.0f}"
        lines.append(f"| {model} | {entry['rows']} | " + " | ".join(cells) + f" | {fit_ms} |")
    lines += ["", "| call | µs per call (median of 7 x 200) |", "|---|---:|"]
    lines += [f"| {name} | {micros:.0f} |" for name, micros in timings.items()]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    lines += ["", f"Python {platform.python_version()}, numpy {np.__version__}, {machine}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir(), help="Pollux data (default: the packaged copy)")
    args = parser.parse_args(argv)
    traces = args.data / "traces"
    report, timings = accuracy(traces), timing(traces)
    table = markdown(report, timings)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model_accuracy.md").write_text(table)
    document = {"accuracy": report, "timing_us": timings, "python": platform.python_version()}
    (RESULTS / "model_accuracy.json").write_text(json.dumps(document, indent=2) + "\n")
    print(table)
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
