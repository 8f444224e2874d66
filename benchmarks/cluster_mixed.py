"""Benchmark: a mixed workload of 8 digits-CNN jobs on the local cluster, submitted with fixed
sizes (as users do today) and then as elastic jobs with `hpcsched rebalance` running every
--every seconds (as cron would), side by side in one run. Reports makespan and average job
completion time (submission to end). The jobs differ in length (epochs) and per-step cost
(--step-delay stands in for bigger models), like the candidates of an architecture search.

Run as root after `make setup`:  .venv/bin/python benchmarks/cluster_mixed.py [--every 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

from common import SITE, USER, as_user, workspace, write_results

REPO = Path(__file__).resolve().parents[1]
# (epochs, step delay in s, fixed node count a user would pick)
JOBS = [(20, 0.06, 1), (30, 0.04, 2), (15, 0.08, 1), (25, 0.05, 1), (40, 0.03, 2), (20, 0.05, 1), (10, 0.1, 1),
        (30, 0.05, 2)]
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def run_mode(name: str, elastic: bool, every: float) -> dict[str, float]:
    root = workspace(f"mixed-{name}")
    (root / "work" / "digits_cnn.py").write_text((REPO / "examples" / "digits_cnn.py").read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(root / "work")], check=True)
    hs = [str(SITE / "bin" / "hpcsched")]
    as_user(hs + ["daemon", "start"], root)
    start = time.time()
    ids = []
    for epochs, delay, fixed in JOBS:
        nodes = ["--nodes", "1-3", "--start-nodes", str(fixed)] if elastic else ["--nodes", str(fixed)]
        out = as_user(hs + ["run", "--json", "digits_cnn.py", *nodes, "--", "--epochs", str(epochs),
                            "--step-delay", str(delay), "--checkpoint-every", "40"], root).stdout
        ids.append(json.loads(out)["id"])
    stop = threading.Event()
    passes = 0

    def rebalancer() -> None:
        nonlocal passes
        while not stop.wait(every):
            as_user(hs + ["rebalance", "--quiet"], root)
            passes += 1

    thread = threading.Thread(target=rebalancer, daemon=True)
    if elastic:
        thread.start()
    while True:
        jobs = json.loads(as_user(hs + ["status", "--json"], root).stdout)
        if all(j["state"] in FINAL for j in jobs):
            break
        time.sleep(2)
    stop.set()
    as_user(hs + ["daemon", "stop"], root)
    ends = [max(a["end_time"] or 0 for a in j["attempts"]) for j in jobs]
    jct = [end - j["created"] for end, j in zip(ends, jobs, strict=True)]
    return {"makespan_s": max(ends) - start, "avg_jct_s": statistics.mean(jct), "completed": sum(
        j["state"] == "COMPLETED" for j in jobs), "resizes": sum(j["counts"]["resizes"] for j in jobs),
        "rebalance_passes": passes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=float, default=15.0, help="seconds between rebalance passes")
    every = ap.parse_args().every
    fixed = run_mode("fixed", elastic=False, every=every)
    elastic = run_mode("elastic", elastic=True, every=every)
    table = (
        "# Mixed workload on the local cluster: fixed sizes vs elastic with rebalance\n\n"
        f"8 digits-CNN jobs of different lengths on 3 emulated nodes, submitted at once; rebalance every {every:.0f} s.\n\n"
        "| mode | makespan s | avg JCT s | completed | resizes |\n|---|---|---|---|---|\n"
        f"| fixed sizes | {fixed['makespan_s']:.0f} | {fixed['avg_jct_s']:.0f} | {fixed['completed']} | 0 |\n"
        f"| elastic + rebalance | {elastic['makespan_s']:.0f} | {elastic['avg_jct_s']:.0f} | {elastic['completed']} | "
        f"{elastic['resizes']} |\n\n"
        f"Elastic / fixed: makespan {elastic['makespan_s'] / fixed['makespan_s']:.2f}x, "
        f"average JCT {elastic['avg_jct_s'] / fixed['avg_jct_s']:.2f}x.\n"
    )
    write_results("cluster_mixed", {"fixed": fixed, "elastic": elastic, "every_s": every}, table)


if __name__ == "__main__":
    main()
