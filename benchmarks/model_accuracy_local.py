"""Benchmark: the step-time model's error on real local-cluster runs it was not fitted on.

benchmarks/model_accuracy.py does the same on the Pollux profiles; this one on the local cluster.

Jobs: examples/digits_nas.py (its default architecture) with a fixed batch, one job per
configuration of --allocations x --batches (samples per rank), submitted one at a time, each
waited for before the next: the emulated nodes share this machine's CPUs, so concurrent jobs
would slow each other down. An allocation NxP is N nodes with P training processes (and P CPUs)
each, so 1x2 all-reduces inside one node and 2x1 across two. The default allocations keep
every training process on a CPU of its own (this machine has 2): with more processes than CPUs
each one's compute slows down by the oversubscription, which no model of independent nodes
represents and no real cluster does (the previous version of this benchmark, with 3 nodes on 2
CPUs, measured 0.08 ms per sample on 3 nodes against 0.025 on one). For the same reason the
benchmark checks on a job only every --poll seconds: each check is a CLI process, and on the
real cluster it would run on the login node, not beside the training. Each job runs --epochs epochs, or by default the
fewest that give at least --steps timed steps (the runtime leaves the first step of every epoch
and the short last one untimed) and about --seconds of training (step lines come at most every
0.5 s, and the steps after the last one are not reported). Each job's progress.jsonl becomes
observations through hpcsched.jobs.measured.measure, the code path of `hpcsched model` and of
the rebalance pass.

Error: per held-out configuration predicted / measured - 1; MAPE is the mean of its absolute
value over the held-out configurations.

* leave one out: for each configuration, fit on all the others and predict it;
* larger batch: fit on the local batches below the largest, on every allocation, and predict
  the largest (a job that has not yet run at the batch its next allocation would use);
* in-sample: fit and test on all, the floor the model's form allows on this data.

The whole set runs --repeats times (alternating order); the MAPEs are reported as the median
over repeats with min and max, the per-configuration columns as medians over repeats.

Run as root after `make setup`:  .venv/bin/python benchmarks/model_accuracy_local.py [--repeats 3]
(--allocations 1x1,2x1,3x1 reproduces the oversubscribed set.)
Writes benchmarks/results/model_accuracy_local.{md,json}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from accuracy import errors, fit_on, in_sample, leave_one_out, mape
from common import RESULTS, SITE, USER, as_user, summary, workspace, write_results

from hpcsched.jobs import layout
from hpcsched.jobs.measured import MeasuredStepTime, measure
from hpcsched.jobs.model import FINAL_STATES
from hpcsched.models import Observation

REPO = Path(__file__).resolve().parents[1]
FINAL = {s.value for s in FINAL_STATES}
TRAIN_SAMPLES = 1437  # scikit-learn's digits: 1797 images, 80% for training (examples/digits_cnn.py)
TARGET = 0.10
# Rough digits_nas.py step time on the 2-core development machine (fixed part, per sample of the
# local batch, all-reduce across emulated nodes); only used to pick how many epochs a job runs.
STEP_GUESS_S, SAMPLE_GUESS_S, NETWORK_GUESS_S = 3e-3, 6e-5, 1e-3
Key = tuple[int, int, int]  # (nodes, processes per node, samples per rank)
Predictions = dict[Key, float]


def epochs_for(replicas: int, batch: int, steps: int, seconds: float) -> int:
    """The fewest epochs with at least ``steps`` timed steps and about ``seconds`` of training.

    Per epoch every full global batch but the first (it includes the loader's start and the
    evaluation before it) is timed. The runtime writes a step line at most every 0.5 s and
    drops the steps after the last one, so a job must train for seconds, not just many steps;
    the duration comes from a rough guess of the step time, which sets only how long a job runs.
    """
    global_batch = replicas * batch
    steps_per_epoch = math.ceil(TRAIN_SAMPLES / global_batch)
    timed_per_epoch = max(1, TRAIN_SAMPLES // global_batch - 1)
    guess = STEP_GUESS_S + SAMPLE_GUESS_S * batch + (NETWORK_GUESS_S if replicas > 1 else 0.0)
    return max(math.ceil(steps / timed_per_epoch), math.ceil(seconds / (steps_per_epoch * guess)))


# --- the accuracy of the model (pure) ---


def larger_batch(measured: Mapping[Key, Observation]) -> Predictions:
    """The configurations with the largest local batch, predicted by a fit on the smaller ones."""
    largest = max(batch for *_, batch in measured)
    return fit_on(measured, lambda key: key[2] < largest)


SPLITS: dict[str, Callable[[Mapping[Key, Observation]], Predictions]] = {
    "leave one out": leave_one_out,
    "larger batch": larger_batch,
    "in-sample": in_sample,
}


# --- the jobs (the cluster) ---


class Session:
    """One workspace and daemon as the cluster user; runs one job at a time."""

    def __init__(self, root: Path, timeout: float, poll: float) -> None:
        self.root, self.timeout, self.poll = root, timeout, poll
        self.hs = [str(SITE / "bin" / "hpcsched")]

    def call(self, *args: str) -> str:
        return as_user([*self.hs, *args], self.root).stdout

    def jobs(self, job: int | None = None) -> list[dict[str, Any]]:
        return list(json.loads(self.call("status", *([str(job)] if job is not None else []), "--json")))

    def run(self, nodes: int, procs: int, batch: int, epochs: int) -> dict[str, Any]:
        """Submit one fixed-batch job and wait for it to end; its final status object."""
        out = self.call(
            "run", "--json", "--nodes", str(nodes), "--procs-per-node", str(procs), "--cpus-per-node", str(procs),
            "--name", f"acc-{nodes}x{procs}-b{batch}", "digits_nas.py", "--",
            "--epochs", str(epochs), "--batch-size", str(batch), "--checkpoint-every", "100000",
        )  # fmt: skip
        job_id = int(json.loads(out)["id"])
        deadline = time.monotonic() + self.timeout
        while True:
            job = self.jobs(job_id)[0]
            if job["state"] in FINAL:
                return job
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} ({nodes}x{procs}, batch {batch}) still {job['state']} after {self.timeout:.0f} s")
            time.sleep(self.poll)

    def close(self) -> None:
        """Cancel what still runs and stop the daemon, whatever went wrong before: the cluster is shared."""
        try:
            for job in self.jobs():
                if job["state"] not in FINAL:
                    self.call("cancel", str(job["id"]), "--wait")
        except subprocess.CalledProcessError as error:
            print(f"cleanup: {error.cmd} failed: {error.stderr}", file=sys.stderr)
        finally:
            self.call("daemon", "stop")


def read_progress(job: dict[str, Any]) -> list[dict[str, Any]]:
    progress = layout.progress_file(job["job_dir"])
    return [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]


def step_time_of(job: dict[str, Any], records: Sequence[Mapping[str, Any]]) -> MeasuredStepTime:
    """The job's measured configuration (a fixed-batch job has one; the most timed if several)."""
    measured = measure(records, {a["number"]: a["nodes"] for a in job["attempts"]})
    if not measured.step_times:
        raise SystemExit(f"job {job['id']} reported no step time ({layout.progress_file(job['job_dir'])})")
    return max(measured.step_times, key=lambda m: m.timed_steps)


def training_seconds(records: Sequence[Mapping[str, Any]]) -> float | None:
    """From the first "start" line to the last "done" line: the training, without queue and container start."""
    starts = [r["time"] for r in records if r.get("event") == "start"]
    ends = [r["time"] for r in records if r.get("event") == "done"]
    return max(ends) - min(starts) if starts and ends else None


def run_set(session: Session, repeat: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One job per configuration, one at a time; every other repeat in reverse order."""
    keys = [(n, p, b) for n, p in args.allocations for b in args.batches]
    if repeat % 2:
        keys.reverse()
    runs = []
    for i, (nodes, procs, batch) in enumerate(keys, 1):
        epochs = args.epochs or epochs_for(nodes * procs, batch, args.steps, args.seconds)
        job = session.run(nodes, procs, batch, epochs)
        if job["state"] != "COMPLETED":
            log = job["attempts"][-1]["log_path"] if job["attempts"] else "no attempt"
            raise SystemExit(f"job {job['id']} ({nodes}x{procs}, batch {batch}) ended {job['state']}; log: {log}")
        records = read_progress(job)
        m, train_s = step_time_of(job, records), training_seconds(records)
        end = max(a["end_time"] or 0.0 for a in job["attempts"])
        runs.append({
            "nodes": nodes, "procs": procs, "batch": batch, "epochs": epochs, "job": job["id"], "step_time": m.step_time,
            "timed_steps": m.timed_steps, "config": dataclasses.asdict(m.config), "train_s": train_s,
            "submit_to_end_s": end - job["created"],
        })  # fmt: skip
        few = f" (fewer than --steps {args.steps})" if m.timed_steps < args.steps else ""
        print(
            f"repeat {repeat + 1}/{args.repeats} job {i}/{len(keys)} (id {job['id']}): {nodes}x{procs} x {batch}/rank, "
            f"{epochs} epochs, {m.timed_steps} timed steps{few}, {m.step_time * 1e3:.2f} ms/step, "
            f"{train_s or 0:.1f} s training, {end - job['created']:.0f} s submit to end",
            file=sys.stderr,
        )
    return runs


def observations(runs: Sequence[Mapping[str, Any]]) -> dict[Key, Observation]:
    out = {}
    for r in runs:
        c = r["config"]
        out[(r["nodes"], r["procs"], r["batch"])] = Observation(
            num_nodes=c["num_nodes"], num_replicas=c["num_replicas"], local_bsz=c["local_bsz"],
            accum_steps=c["accum_steps"], step_time=r["step_time"],
        )  # fmt: skip
    return out


# --- the report ---


def analyse(repeats: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Per repeat and split the predictions and MAPE; over repeats the MAPE's median, min and max."""
    per_repeat: list[dict[str, Any]] = []
    for runs in repeats:
        measured = observations(runs)
        splits: dict[str, dict[str, Any]] = {}
        for name, split in SPLITS.items():
            predictions = split(measured)
            splits[name] = {
                "mape": mape(predictions, measured),
                "predicted": {label(k): p for k, p in predictions.items()},
                "error": {label(k): e for k, e in errors(predictions, measured).items()},
            }
        per_repeat.append({"runs": list(runs), "splits": splits})
    mapes: dict[str, dict[str, float] | None] = {}
    for name in SPLITS:
        values = [r["splits"][name]["mape"] for r in per_repeat if r["splits"][name]["mape"] is not None]
        mapes[name] = summary(values) if values else None
    return {"repeats": per_repeat, "mape": mapes}


def label(key: Key) -> str:
    """``NxP/B``: N nodes x P processes per node, B samples per process."""
    return f"{key[0]}x{key[1]}/{key[2]}"


def slashed(values: Sequence[object]) -> str:
    return "/".join(map(str, values))


def median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    repeats = result["repeats"]
    largest = max(args.batches)
    allocations = [f"{n}x{p}" for n, p in args.allocations]
    names = {
        "leave one out": f"leave one configuration out ({len(allocations) * len(args.batches)} fits)",
        "larger batch": f"fit on batches {slashed([b for b in args.batches if b < largest])}, predict {largest}",
        "in-sample": "in-sample (fit and test on all: the floor)",
    }
    lines = [
        "# Step-time model accuracy on real runs on the local cluster",
        "",
        f"examples/digits_nas.py (default architecture), fixed batch, allocations {slashed(allocations)} "
        f"(nodes x processes per node, one CPU per process) x samples per rank {slashed(args.batches)}, one "
        f"job at a time, checked every {args.poll:g} s; {len(repeats)} repeats. MAPE of the predicted step time "
        "on the held-out configurations "
        "(benchmarks/model_accuracy_local.py has the splits).",
        "",
        "| split | MAPE median | min | max | target <= 10% |",
        "|---|---:|---:|---:|---|",
    ]
    for name, label in names.items():
        s = result["mape"][name]
        if s is None:
            lines.append(f"| {label} | - | - | - | not computed |")
            continue
        met = "(for information)" if name == "in-sample" else ("met" if s["median"] <= TARGET else "NOT met")
        lines.append(f"| {label} | {s['median']:.1%} | {s['min']:.1%} | {s['max']:.1%} | {met} |")
    lines += [
        "",
        "Per configuration, the median over repeats of each column (error: predicted / measured - 1).",
        "",
        "| nodes x procs | batch/rank | epochs | training s | timed steps | measured ms | leave-one-out ms | error "
        "| larger-batch ms | error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [config_row(repeats, (n, p, b)) for n, p in args.allocations for b in args.batches]
    lines += [
        "",
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs. Reproduce (as root, after "
        f"`make setup`): `.venv/bin/python benchmarks/model_accuracy_local.py {command_line(args)}`",
        "",
    ]
    return "\n".join(lines)


def command_line(args: argparse.Namespace) -> str:
    """The options that reproduce this run."""
    allocations = ",".join(f"{n}x{p}" for n, p in args.allocations)
    options = [f"--allocations {allocations}", f"--batches {','.join(map(str, args.batches))}", f"--poll {args.poll:g}"]
    options += [f"--epochs {args.epochs}"] if args.epochs else [f"--steps {args.steps}", f"--seconds {args.seconds:g}"]
    return " ".join([*options, f"--repeats {args.repeats}"])


def config_row(repeats: Sequence[Mapping[str, Any]], config: Key) -> str:
    """One configuration's table row: medians over repeats."""
    key = label(config)
    runs = [next(r for r in rep["runs"] if (r["nodes"], r["procs"], r["batch"]) == config) for rep in repeats]

    def column(split: str, kind: str) -> float | None:
        return median_or_none([rep["splits"][split][kind].get(key) for rep in repeats])

    cells = [
        f"{runs[0]['epochs']}",
        seconds(median_or_none([r["train_s"] for r in runs])),
        f"{statistics.median(r['timed_steps'] for r in runs):.0f}",
        ms(statistics.median(r["step_time"] for r in runs)),
        ms(column("leave one out", "predicted")),
        pct(column("leave one out", "error")),
        ms(column("larger batch", "predicted")),
        pct(column("larger batch", "error")),
    ]
    return f"| {config[0]}x{config[1]} | {config[2]} | " + " | ".join(cells) + " |"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.2f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of positive integers")
    return sorted(set(values))


def allocation_list(text: str) -> list[tuple[int, int]]:
    """``1x1,1x2,2x1`` -> [(1, 1), (1, 2), (2, 1)]: nodes x processes per node."""
    try:
        pairs = [tuple(int(v) for v in item.split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of NODESxPROCS, e.g. 1x1,1x2,2x1")
    return [(p[0], p[1]) for p in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocations", type=allocation_list, default=[(1, 1), (1, 2), (2, 1)],
                        help="nodes x processes per node, comma-separated (default 1x1,1x2,2x1)")  # fmt: skip
    parser.add_argument("--batches", type=int_list, default=[8, 16, 32, 128], help="samples per rank (default 8,16,32,128)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between checks on the running job (default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every job (default: from --steps and --seconds)")
    parser.add_argument("--steps", type=int, default=100, help="at least this many timed steps per job (default 100)")
    parser.add_argument("--seconds", type=float, default=6.0, help="about this much training per job (default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="times the whole set runs (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one job may take (default 300)")
    parser.add_argument("--refit", action="store_true",
                        help="run no job: fit again to the runs recorded in results/model_accuracy_local.json "
                             "(after a change to the fit or its prior)")  # fmt: skip
    args = parser.parse_args()
    if args.refit:
        recorded = json.loads((RESULTS / "model_accuracy_local.json").read_text())
        result = analyse([r["runs"] for r in recorded["repeats"]])
        result["args"] = recorded["args"]
        write_results("model_accuracy_local", result, markdown(result, argparse.Namespace(**recorded["args"])))
        return
    root = workspace("model-accuracy-local")
    for name in ("digits_nas.py", "digits_cnn.py"):
        (root / "work" / name).write_text((REPO / "examples" / name).read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(root / "work")], check=True)
    session = Session(root, args.timeout, args.poll)
    session.call("daemon", "start")
    try:
        repeats = [run_set(session, repeat, args) for repeat in range(args.repeats)]
    finally:
        session.close()
    result = analyse(repeats)
    result["args"] = vars(args)
    write_results("model_accuracy_local", result, markdown(result, args))


if __name__ == "__main__":
    main()
