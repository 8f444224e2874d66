"""How long `hpcsched report` takes over 10,000 recorded attempts, with ONE sacct call.

    .venv/bin/python benchmarks/report_scale.py [--attempts 10000] [--repeats 5]

Synthetic data, no cluster: 4,000-odd hpcsched jobs of 50 users (1-5 attempts each: requeues,
timeouts and node failures rerun under the same Slurm id, grows get a new one), the matching
`sacct --json -D` document in Slurm 22.05's v0.0.38 layout (each run is a copy of a run recorded
on the local cluster, steps included, pretty-printed as sacct prints it), and progress lines for
a third of the jobs. The report path is timed whole, as `hpcsched report --format json` runs it
for an operator: the daemon's job list (injected), the sacct call (an injected runner that
answers with the document; calls are counted), reading the progress files, building the report
and rendering it. Target: median of 5 runs under 2 s. Writes benchmarks/results/report_scale.*.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcsched.config import Settings
from hpcsched.report import gather, render
from hpcsched.report.window import make_window
from hpcsched.slurm.runner import CommandResult

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "tests" / "fixtures" / "slurm-22.05" / "sacct-report-jobs.json"
STORE = "benchstore01"
T0 = 1_795_000_000
REASONS = ("requeue", "timeout", "node_failure", "resize")
END_STATE = {"requeue": "REQUEUED", "timeout": "REQUEUED", "node_failure": "NODE_FAIL", "resize": "COMPLETED"}


def workload(attempts: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, list[str]]]:
    """hpcsched job dicts, sacct job records (one per run) and progress lines by job id."""
    rng = random.Random(seed)
    jobs: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    progress: dict[int, list[str]] = {}
    slurm_id, made = 1000, 0
    while made < attempts:
        job_id = len(jobs) + 1
        count = min(rng.choice([1, 1, 1, 2, 3, 5]), attempts - made)
        nodes = rng.choice([1, 2, 4, 8])
        created = T0 + rng.uniform(0, 6 * 86400)
        t = created
        job_attempts = []
        for number in range(1, count + 1):
            reason = "submit" if number == 1 else rng.choice(REASONS)
            if number == 1 or reason == "resize":
                slurm_id += 1
            wait, run = rng.uniform(0, 3600), rng.uniform(60, 4 * 3600)
            last = number == count
            state = rng.choice(["COMPLETED", "COMPLETED", "FAILED", "CANCELLED"]) if last else "STOPPED"
            job_attempts.append({"number": number, "reason": reason, "state": state, "nodes": nodes, "slurm_job_id": slurm_id,
                                 "submit_time": t, "start_time": t + wait, "end_time": t + wait + run})
            next_reason = "" if last else "resize"
            runs.append({"job_id": slurm_id, "user": f"user{job_id % 50:02d}", "tag": f"hpcsched:{STORE}:{job_id}",
                         "state": state if last else END_STATE.get(next_reason, "REQUEUED"), "submit": t, "start": t + wait,
                         "end": t + wait + run, "nodes": nodes})
            t += wait + run + rng.uniform(30, 120)
        job = {"id": job_id, "name": f"train-{job_id}", "user": f"user{job_id % 50:02d}", "state": job_attempts[-1]["state"],
               "created": created, "exit_code": 0, "attempts": job_attempts, "job_dir": ""}
        if job_id % 3 == 0:
            progress[job_id] = progress_lines(job_attempts, rng)
        jobs.append(job)
        made += count
    return jobs, runs, progress


def progress_lines(attempts: Sequence[dict[str, Any]], rng: random.Random, lines: int = 30) -> list[str]:
    out, step = [], 0
    for a in attempts:
        step = max(0, step - rng.choice([0, 0, 20, 50]))  # resumed from an earlier checkpoint, sometimes
        t = a["start_time"] + 20
        for i in range(lines):
            event = "start" if i == 0 else "step"
            out.append(json.dumps({"time": t, "attempt": a["number"], "event": event, "step": step, "epoch": 0,
                                   "samples": step * 256, "loss": 1.0, "step_time": 0.5, "world_size": 4 * a["nodes"],
                                   "global_batch": 256, "total_steps": 100_000, "elastic": True, "efficiency": 0.8}))
            step += 10
            t += 5.0
    return out


def sacct_document(runs: Sequence[dict[str, Any]]) -> str:
    doc = json.loads(TEMPLATE.read_text())
    template = doc["jobs"][0]
    records = []
    for r in runs:
        j = copy.deepcopy(template)
        j.update(job_id=r["job_id"], user=r["user"], name="train", allocation_nodes=r["nodes"],
                 nodes=f"node[{r['job_id'] % 500}-{r['job_id'] % 500 + r['nodes'] - 1}]" if r["nodes"] > 1 else "node7")
        j["comment"]["job"] = r["tag"]
        j["state"]["current"] = r["state"]
        j["time"].update(submission=int(r["submit"]), eligible=int(r["submit"]), start=int(r["start"]),
                         end=int(r["end"]), elapsed=int(r["end"]) - int(r["start"]))
        j["tres"]["allocated"] = [{"type": "cpu", "name": None, "id": 1, "count": 32 * r["nodes"]},
                                  {"type": "node", "name": None, "id": 4, "count": r["nodes"]},
                                  {"type": "gres", "name": "gpu", "id": 1001, "count": 4 * r["nodes"]}]
        records.append(j)
    doc["jobs"] = records
    return json.dumps(doc, indent=2)


class CountingSacct:
    def __init__(self, stdout: str) -> None:
        self.stdout, self.calls = stdout, 0

    def __call__(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 30.0) -> CommandResult:
        assert argv[0] == "sacct"
        self.calls += 1
        return CommandResult(tuple(argv), self.stdout, "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    jobs, runs, progress = workload(args.attempts)
    document = sacct_document(runs)
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            if job["id"] in progress:
                job["job_dir"] = f"{tmp}/{job['id']}"
                Path(job["job_dir"]).mkdir()
                Path(job["job_dir"], "progress.jsonl").write_text("\n".join(progress[job["id"]]) + "\n")
        now = T0 + 8 * 86400
        sacct = CountingSacct(document)
        sources = gather.Sources(call=lambda settings, op, args=None, timeout=0: jobs,
                                 ensure_daemon=lambda settings: {"store_id": STORE, "operator": True},
                                 runner=sacct, clock=lambda: now, whoami=lambda: "root")
        request = gather.Request(window=make_window("30d", "now", now))
        settings = Settings.from_env()
        totals, phases = [], []
        for _ in range(args.repeats):
            calls = sacct.calls
            start = time.perf_counter()
            report = gather.make_report(settings, request, sources)
            built = time.perf_counter()
            text = render.to_json(report)
            end = time.perf_counter()
            assert sacct.calls == calls + 1, "one sacct call per report"
            totals.append(end - start)
            phases.append((built - start, end - built))
            csv_start = time.perf_counter()
            render.to_csv(report)
            csv_s = time.perf_counter() - csv_start
        table_start = time.perf_counter()
        render.write_table(report, io.StringIO())
        table_s = time.perf_counter() - table_start
    assert sum(len(j.attempts) for j in report.jobs) == args.attempts and report.cluster.unknown_jobs == 0
    median = statistics.median(totals)
    data = {
        "attempts": args.attempts, "jobs": len(jobs), "users": len(report.users), "sacct_runs": len(runs),
        "sacct_json_mb": len(document) / 1e6, "jobs_with_progress": len(progress),
        "progress_lines": sum(len(v) for v in progress.values()), "sacct_calls_per_report": sacct.calls / args.repeats,
        "report_s": {"median": median, "min": min(totals), "max": max(totals), "runs": totals},
        "gather_and_build_median_s": statistics.median(p[0] for p in phases),
        "json_render_median_s": statistics.median(p[1] for p in phases), "csv_render_s": csv_s, "table_render_s": table_s,
        "json_output_mb": len(text) / 1e6, "target_s": 2.0, "python": platform.python_version(),
        "machine": platform.machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    table = (
        "# `hpcsched report` over 10,000 attempts\n\n"
        f"{len(jobs)} jobs of {len(report.users)} users, {args.attempts} attempts = {len(runs)} Slurm runs in one "
        f"{data['sacct_json_mb']:.0f} MB `sacct --json -D` document (v0.0.38 layout, each run a copy of a recorded one, "
        f"steps included), progress files for {len(progress)} jobs ({data['progress_lines']} lines). The whole path "
        "as `hpcsched report --format json` runs it for an operator: daemon job list (injected), ONE sacct call "
        "(injected runner, counted), progress files read from disk, report built, JSON rendered. "
        f"Python {data['python']}, one core.\n\n"
        "| | median s | min s | max s |\n|---|---|---|---|\n"
        f"| whole report ({args.repeats} runs) | {median:.3f} | {min(totals):.3f} | {max(totals):.3f} |\n\n"
        f"Of the median run: gather and build {data['gather_and_build_median_s']:.3f} s, JSON rendering "
        f"{data['json_render_median_s']:.3f} s. Not in the total: CSV rendering {csv_s:.3f} s, the table "
        f"(17 columns, a row per job and per attempt) {table_s:.3f} s. "
        f"sacct calls per report: {data['sacct_calls_per_report']:g}."
        f"\n\nTarget < 2 s: **{'met' if median < 2.0 else 'missed'}**.\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report_scale.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (RESULTS / "report_scale.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
