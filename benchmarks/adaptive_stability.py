"""Stability of the adaptive integration test: run it N times in a row and record each run.

tests/integration/test_adaptive.py::test_adaptive_search_changes_batches_and_stays_in_the_accuracy_band_of_fixed
runs two small architecture searches (fixed and adaptive) on the local cluster and checks,
among other things, that `hpcsched model` fits the adaptive trial's step times (step-weighted
median error < 25%). It failed now and then on a busy machine; this records, per run, pass or
fail (and the first error line), the duration, the model error the test printed and the load
average around it, with the date and the machine's core count. Each invocation adds a series to
the results; earlier series stay. The machine is not kept quiet on purpose: other work runs
beside it, as it does on a shared login node.

Run as root after `make setup` and `bash scripts/refresh-site`:
    .venv/bin/python benchmarks/adaptive_stability.py [--runs 20]
Writes benchmarks/results/adaptive_stability.{md,json} (rewritten after every run, earlier series kept).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import RESULTS, write_results

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/integration/test_adaptive.py::test_adaptive_search_changes_batches_and_stays_in_the_accuracy_band_of_fixed"
ERROR_LINE = re.compile(r"model error: ([0-9.]+)% step-weighted median, ([0-9.]+)% worst of (\d+) configurations")


def parse_model_error(output: str) -> dict[str, float] | None:
    """The model error line the test prints, or None when it did not get that far."""
    match = ERROR_LINE.search(output)
    if match is None:
        return None
    return {"median_pct": float(match[1]), "worst_pct": float(match[2]), "configurations": int(match[3])}


def failure_reason(output: str) -> str:
    """The first failed ``assert`` pytest printed, else its first error line, shortened for the table."""
    match = re.search(r"^E\s+(assert .+)$", output, re.MULTILINE) or re.search(r"^E\s+(.+)$", output, re.MULTILINE)
    reason = match[1].strip() if match else output.strip().splitlines()[-1] if output.strip() else "no output"
    return reason if len(reason) <= 160 else reason[:157] + "..."


def run_once(number: int) -> dict[str, Any]:
    load_before, start = os.getloadavg()[0], time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    return {
        "run": number,
        "passed": proc.returncode == 0,
        "seconds": round(time.monotonic() - start, 1),
        "model_error": parse_model_error(output),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "failure": None if proc.returncode == 0 else failure_reason(output),
        "output_tail": None if proc.returncode == 0 else output[-3000:],
    }


def series_text(series: dict[str, Any]) -> list[str]:
    runs = series["runs"]
    passed = sum(r["passed"] for r in runs)
    errors = [r["model_error"]["median_pct"] for r in runs if r["model_error"]]
    lines = [
        f"## {series['started']}: {passed}/{len(runs)} passed",
        "",
        f"{len(runs)} runs in a row, {series['cores']} cores, {series['python']}, commit {series['commit']}. "
        "Model error (`hpcsched model` on the adaptive trial, step-weighted median of |predicted / measured - 1|; "
        "the test checks < 25%): "
        + (f"median {statistics.median(errors):.1f}%, max {max(errors):.1f}%." if errors else "none reported."),
        "",
        "| run | result | seconds | model error (weighted median) | worst configuration | configurations "
        "| load before | load after | why it failed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        e = r["model_error"]
        cells = [f"{e['median_pct']:.1f}%", f"{e['worst_pct']:.1f}%", str(e["configurations"])] if e else ["-"] * 3
        why = (r["failure"] or "").replace("|", "/")
        result = "pass" if r["passed"] else "FAIL"
        cells = [result, f"{r['seconds']:.0f}", *cells, str(r["load_before"]), str(r["load_after"]), why]
        lines.append(f"| {r['run']} | {' | '.join(cells)} |")
    return [*lines, "", *series.get("notes", []), ""]


def table(all_series: list[dict[str, Any]]) -> str:
    lines = [
        "# Adaptive integration test, run repeatedly",
        "",
        f"`{TEST}`, run N times in a row by benchmarks/adaptive_stability.py, each series as it came. Other",
        "engineers' work ran on the same machine throughout (the 1-minute load average before and after each",
        "run is in the tables): a busy machine, not a quiet one. A failure's first error line is quoted.",
        "",
    ]
    for series in all_series:
        lines += series_text(series)
    lines += ["Reproduce (as root, after `make setup` and `bash scripts/refresh-site`): "
              "`.venv/bin/python benchmarks/adaptive_stability.py --runs 20`", ""]  # fmt: skip
    return "\n".join(lines)


def earlier_series() -> list[dict[str, Any]]:
    path = RESULTS / "adaptive_stability.json"
    if not path.exists():
        return []
    series: list[dict[str, Any]] = json.loads(path.read_text()).get("series", [])
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--note", action="append", default=[], help="a line to print under this series' table")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    series: dict[str, Any] = {
        "started": datetime.datetime.now().isoformat(timespec="minutes"),
        "cores": os.cpu_count(),
        "python": f"Python {platform.python_version()}, {platform.machine()}",
        "commit": commit or "unknown",
        "notes": args.note,
        "runs": [],
    }
    all_series = [*earlier_series(), series]
    for number in range(1, args.runs + 1):
        series["runs"].append(run_once(number))
        r = series["runs"][-1]
        print(f"run {number}: {'pass' if r['passed'] else 'FAIL'} in {r['seconds']} s, {r['model_error']}", flush=True)
        write_results("adaptive_stability", {"test": TEST, "series": all_series}, table(all_series))


if __name__ == "__main__":
    main()
