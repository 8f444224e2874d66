"""Benchmark: what one resize costs, broken into its parts, for shrink in place, make-before-break
grow and plain requeue, on the local cluster (median of --runs resizes each).

Parts, from the files the job writes (driver, process 1 of the container, runtime library):
  decision (resize called) → checkpoint saved (attempts/<n>/checkpointed) → workers stopped
  (attempts/<n>/end.json) → new allocation running (attempts/<n+1>/info.json) → container up
  (attempts/<n+1>/events.jsonl) → rendezvous + checkpoint loaded (progress "start") → first step.
"Training time lost" is the time with no training step on any allocation: from the old
attempt's last step to the new attempt's first. Queue wait (decision → new allocation running,
for grow and requeue) is reported separately; for grow it overlaps training and costs nothing.
Progress lines are written at most every 0.5 s, which bounds the resolution.

Run as root after `make setup`:  .venv/bin/python benchmarks/resize_cycle.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import SITE, USER, as_user, job_dir, summary, workspace, write_results

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["--", "--epochs", "2000", "--checkpoint-every", "50", "--step-delay", "0.02"]


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


class Job:
    def __init__(self, root: Path, job_id: int) -> None:
        self.root, self.id = root, job_id
        self.dir = job_dir(root, job_id)

    def hs(self, *args: str) -> str:
        return as_user([str(SITE / "bin" / "hpcsched"), *args], self.root).stdout

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.hs("status", str(self.id), "--json"))[0])

    def steps(self, attempt: int) -> list[dict[str, Any]]:
        return [r for r in jsonl(self.dir / "progress.jsonl") if r.get("attempt") == attempt and r["event"] == "step"]

    def wait_training(self, attempt: int, nodes: int, steps: int = 5, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.status()
            a = {x["number"]: x for x in info["attempts"]}.get(attempt)
            if a and a["nodes"] == nodes and len(self.steps(attempt)) >= steps and info["elastic"]:
                return
            time.sleep(0.5)
        raise TimeoutError(f"attempt {attempt} not training on {nodes} nodes")

    def breakdown(self, old: int, new: int, decision: float) -> dict[str, float | None]:
        a_old, a_new = self.dir / "attempts" / str(old), self.dir / "attempts" / str(new)
        saved = json.loads((a_old / "checkpointed").read_text())["time"]
        stopped = json.loads((a_old / "end.json").read_text())["end_time"]
        running = json.loads((a_new / "info.json").read_text())["start_time"]
        up = max(e["time"] for e in jsonl(a_new / "events.jsonl") if e["event"] == "container_up")
        start = next(r["time"] for r in jsonl(self.dir / "progress.jsonl") if r.get("attempt") == new and r["event"] == "start")
        first = self.steps(new)[0]["time"]
        last_old = self.steps(old)[-1]["time"]
        return {
            "checkpoint_saved": saved - decision, "workers_stopped": stopped - saved,
            "new_allocation_running": running - stopped, "container_up": up - running,
            "rendezvous_and_load": start - up, "first_step": first - start,
            "queue_wait": running - decision, "training_lost": first - last_old, "total": first - decision,
        }


def submit(root: Path, nodes: str, start: int) -> Job:
    out = as_user([str(SITE / "bin" / "hpcsched"), "run", "--json", "digits_cnn.py", "--nodes", nodes,
                   "--start-nodes", str(start), *DIGITS], root).stdout
    return Job(root, int(json.loads(out)["id"]))


def cycle(job: Job, attempt: int, nodes: int, mode: str) -> dict[str, float | None]:
    decision = time.time()
    job.hs("resize", str(job.id), "--nodes", str(nodes), "--mode", mode)
    job.wait_training(attempt + 1, nodes, steps=2)
    return job.breakdown(attempt, attempt + 1, decision)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    root = workspace("resize")
    (root / "work" / "digits_cnn.py").write_text((REPO / "examples" / "digits_cnn.py").read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(root / "work")], check=True)
    results: dict[str, list[dict[str, float | None]]] = {"shrink": [], "grow": [], "requeue": []}
    job = submit(root, "1-2", 1)  # one node stays free, so a grow to 2 is make-before-break
    job.wait_training(1, 1)
    attempt = 1
    for _ in range(runs):
        results["grow"].append(cycle(job, attempt, 2, "grow"))
        attempt += 1
        results["shrink"].append(cycle(job, attempt, 1, "shrink"))
        attempt += 1
        print(f"grow/shrink pair done: {results['grow'][-1]['training_lost']:.1f} s / "
              f"{results['shrink'][-1]['training_lost']:.1f} s lost", file=sys.stderr)
    job.hs("cancel", str(job.id), "--wait")
    job = submit(root, "1-2", 1)  # requeued at the same size: a user may not raise a pending job's nodes
    job.wait_training(1, 1)
    attempt = 1
    for _ in range(runs):
        results["requeue"].append(cycle(job, attempt, 1, "requeue"))
        attempt += 1
        print(f"requeue done: {results['requeue'][-1]['training_lost']:.1f} s lost", file=sys.stderr)
    job.hs("cancel", str(job.id), "--wait")
    report(results, runs)


def report(results: dict[str, list[dict[str, float | None]]], runs: int) -> None:
    parts = ["checkpoint_saved", "workers_stopped", "new_allocation_running", "container_up",
             "rendezvous_and_load", "first_step", "training_lost", "queue_wait"]
    medians = {mode: {p: summary([float(r[p] or 0) for r in rows])["median"] for p in parts}
               for mode, rows in results.items() if rows}
    lines = ["# Resize cycle on the local cluster", "",
             f"Median of {runs} resizes per kind, seconds; each part starts where the previous one ended.", "",
             "| part | " + " | ".join(medians) + " |", "|---|" + "---|" * len(medians)]
    for p in parts:
        lines.append(f"| {p.replace('_', ' ')} | " + " | ".join(f"{medians[m][p]:.1f}" for m in medians) + " |")
    lines += ["", "Target: training time lost under 20 s for shrink and grow. Queue wait overlaps training for a",
              "make-before-break grow; for requeue it includes Slurm's requeue hold (cred_expire, 30 s here).", ""]
    write_results("resize_cycle", {"runs": runs, "medians": medians, "samples": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
