"""Benchmark: a mixed workload of 8 digits CNNs on the local cluster, fixed sizes vs elastic + rebalance.

The jobs are trials of the architecture search example (examples/digits_nas.py) with different
architectures (--channels/--depth/--width) and lengths (epochs), submitted at once. They run
first with fixed sizes (as users do today), then as elastic jobs (--nodes 1-3, starting at the
same size) with `hpcsched rebalance` every --every seconds (as cron would), one after the other
in one run. Reported: makespan (first submission to last end) and average job completion time
(submission to end), and per job its submission, start and end, its node count over time (one
entry per attempt) and its resizes. --step-delay per job stands in for a bigger model: the 3
emulated nodes share this machine's 2 cores, so without it more nodes could not train faster.

Run as root after `make setup`:  .venv/bin/python benchmarks/cluster_mixed.py [--every 15]
Writes benchmarks/results/cluster_mixed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from common import SITE, USER, as_user, workspace, write_results

from hpcsched.jobs.model import FINAL_STATES

REPO = Path(__file__).resolve().parents[1]
FINAL = {s.value for s in FINAL_STATES}
Hpcsched = Callable[..., str]  # runs `hpcsched ARGS...` as the cluster user, returns its stdout


class MixedJob(NamedTuple):
    """One trial: its architecture, length, per-step delay and the node count a user would pick."""

    channels: int
    depth: int
    width: int
    epochs: int
    step_delay: float
    nodes: int

    @property
    def label(self) -> str:
        return f"c{self.channels}-d{self.depth}-w{self.width}"

    def script_args(self) -> list[str]:
        return [
            "--channels", str(self.channels), "--depth", str(self.depth), "--width", str(self.width),
            "--epochs", str(self.epochs), "--batch-size", "32", "--step-delay", str(self.step_delay),
            "--checkpoint-every", "40",
        ]  # fmt: skip


# Bigger architectures get a longer step delay; epochs * delay spans 45-68 s of delay on one node.
JOBS = [
    MixedJob(16, 2, 64, epochs=20, step_delay=0.06, nodes=1),
    MixedJob(8, 2, 64, epochs=30, step_delay=0.04, nodes=2),
    MixedJob(32, 2, 128, epochs=15, step_delay=0.08, nodes=1),
    MixedJob(16, 1, 64, epochs=25, step_delay=0.05, nodes=1),
    MixedJob(8, 1, 32, epochs=40, step_delay=0.03, nodes=2),
    MixedJob(16, 3, 64, epochs=20, step_delay=0.05, nodes=1),
    MixedJob(32, 3, 128, epochs=10, step_delay=0.1, nodes=1),
    MixedJob(16, 2, 128, epochs=30, step_delay=0.05, nodes=2),
]


class Rebalancer:
    """`hpcsched rebalance --quiet` every ``every`` seconds in a thread, as cron would run it."""

    def __init__(self, call: Hpcsched, every: float) -> None:
        self.call, self.every = call, every
        self.passes, self.failures = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.call("rebalance", "--quiet")
                self.passes += 1
            except subprocess.CalledProcessError as error:
                self.failures += 1
                print(f"rebalance failed ({error.returncode}): {error.stderr.strip()}", file=sys.stderr)


def run_mode(name: str, elastic: bool, every: float, timeout: float) -> dict[str, Any]:
    """Submit all jobs at once, wait for them to end; makespan, average JCT and per-job records."""
    root = workspace(f"mixed-{name}")
    for script in ("digits_nas.py", "digits_cnn.py"):  # digits_nas imports digits_cnn
        (root / "work" / script).write_text((REPO / "examples" / script).read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(root / "work")], check=True)
    hs = [str(SITE / "bin" / "hpcsched")]

    def call(*args: str) -> str:
        return as_user([*hs, *args], root).stdout

    call("daemon", "start")
    rebalancer = Rebalancer(call, every)
    try:
        start = time.time()
        for job in JOBS:
            nodes = ["--nodes", "1-3", "--start-nodes", str(job.nodes)] if elastic else ["--nodes", str(job.nodes)]
            call("run", "--json", "--name", job.label, "digits_nas.py", *nodes, "--", *job.script_args())
        if elastic:
            rebalancer.start()
        jobs = wait_all(call, name, start, timeout)
    finally:
        rebalancer.stop()
        close(call)
    return summarise(jobs, start) | {"rebalance_passes": rebalancer.passes, "rebalance_failures": rebalancer.failures}


def wait_all(call: Hpcsched, name: str, start: float, timeout: float) -> list[dict[str, Any]]:
    """Poll until every job has ended; a line to stderr whenever the states change."""
    shown = ""
    while True:
        jobs = sorted(json.loads(call("status", "--json")), key=lambda j: j["id"])
        states = " ".join(f"{j['id']}:{j['state'][:4]}/{j['nodes']}" for j in jobs)
        if states != shown:
            print(f"{name} +{time.time() - start:.0f} s: {states}", file=sys.stderr)
            shown = states
        if all(j["state"] in FINAL for j in jobs):
            return jobs
        if time.time() - start > timeout:
            raise SystemExit(f"{name}: jobs still running after {timeout:.0f} s")
        time.sleep(2)


def close(call: Hpcsched) -> None:
    """Cancel what still runs and stop the daemon, whatever went wrong before: the cluster is shared."""
    try:
        for job in json.loads(call("status", "--json")):
            if job["state"] not in FINAL:
                call("cancel", str(job["id"]), "--wait")
    except subprocess.CalledProcessError as error:
        print(f"cleanup: {error.cmd} failed: {error.stderr}", file=sys.stderr)
    finally:
        call("daemon", "stop")


def job_record(job: dict[str, Any], start: float) -> dict[str, Any]:
    """Seconds since the benchmark's start: submission, first start, end; nodes per attempt."""
    attempts = job["attempts"]
    starts = [a["start_time"] for a in attempts if a["start_time"] is not None]
    end = max((a["end_time"] or 0.0 for a in attempts), default=0.0)
    return {
        "id": job["id"], "name": job["name"], "state": job["state"], "submitted": job["created"] - start,
        "started": min(starts) - start if starts else None, "ended": end - start if end else None,
        "jct": end - job["created"] if end else None, "resizes": job["counts"]["resizes"],
        "nodes_over_time": [
            {"attempt": a["number"], "reason": a["reason"], "nodes": a["nodes"], "state": a["state"],
             "start": a["start_time"] - start if a["start_time"] is not None else None,
             "end": a["end_time"] - start if a["end_time"] is not None else None}
            for a in attempts
        ],
    }  # fmt: skip


def summarise(jobs: list[dict[str, Any]], start: float) -> dict[str, Any]:
    records = [job_record(j, start) for j in jobs]
    ends = [r["ended"] for r in records if r["ended"] is not None]
    jcts = [r["jct"] for r in records if r["jct"] is not None]
    return {
        "makespan_s": max(ends) if ends else None,
        "avg_jct_s": statistics.mean(jcts) if jcts else None,
        "completed": sum(r["state"] == "COMPLETED" for r in records),
        "resizes": sum(r["resizes"] for r in records),
        "jobs": records,
    }


def nodes_text(record: dict[str, Any]) -> str:
    """Node counts of the attempts that ran, e.g. "2→3@41s→1@97s" (seconds since the benchmark's start)."""
    ran = [a for a in record["nodes_over_time"] if a["start"] is not None]
    parts = [f"{a['nodes']}" if i == 0 else f"{a['nodes']}@{a['start']:.0f}s" for i, a in enumerate(ran)]
    return "→".join(parts) or "never ran"


def ratio_text(name: str, elastic: float | None, fixed: float | None) -> str:
    if not elastic or not fixed:
        return f"{name}: not comparable (a mode has no finished job)"
    verdict = "elastic faster" if elastic < fixed else "elastic slower" if elastic > fixed else "equal"
    return f"{name} {elastic / fixed:.2f}x ({verdict})"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(fixed: dict[str, Any], elastic: dict[str, Any], every: float) -> str:
    lines = [
        "# Mixed workload on the local cluster: fixed sizes vs elastic with rebalance",
        "",
        f"{len(JOBS)} digits_nas.py trials (different architectures and lengths) on 3 emulated nodes sharing 2 cores, "
        f"submitted at once; elastic jobs may use 1-3 nodes, rebalance every {every:.0f} s.",
        "",
        "| mode | makespan s | avg JCT s | completed | resizes | rebalance passes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, mode in (("fixed sizes", fixed), ("elastic + rebalance", elastic)):
        lines.append(
            f"| {label} | {seconds(mode['makespan_s'])} | {seconds(mode['avg_jct_s'])} | {mode['completed']}/{len(JOBS)} | "
            f"{mode['resizes']} | {mode['rebalance_passes']} |"
        )
    lines += [
        "",
        "Elastic / fixed: "
        + ratio_text("makespan", elastic["makespan_s"], fixed["makespan_s"])
        + ", "
        + ratio_text("average JCT", elastic["avg_jct_s"], fixed["avg_jct_s"])
        + ".",
        *(["", "No job was resized: every rebalance pass kept the sizes (each resize was predicted to cost more "
                 "than it saves), so the two modes ran the same schedule and the difference is run-to-run noise."]
          if not elastic["resizes"] else []),
        "",
        "Per job, seconds since the mode's first submission (nodes: at the start, then each resize's new size @ its start).",
        "",
        "| job | epochs | step delay s | fixed: nodes | start | end | JCT | elastic: nodes | resizes | start | end | JCT |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for spec, f, e in zip(JOBS, fixed["jobs"], elastic["jobs"], strict=True):
        lines.append(
            f"| {spec.label} | {spec.epochs} | {spec.step_delay} | {nodes_text(f)} | {seconds(f['started'])} | "
            f"{seconds(f['ended'])} | {seconds(f['jct'])} | {nodes_text(e)} | {e['resizes']} | {seconds(e['started'])} | "
            f"{seconds(e['ended'])} | {seconds(e['jct'])} |"
        )
    failed = [f"{r['id']} {r['name']} ({mode}: {r['state']})" for mode, m in (("fixed", fixed), ("elastic", elastic))
              for r in m["jobs"] if r["state"] != "COMPLETED"]  # fmt: skip
    if failed:
        lines += ["", "Not completed: " + ", ".join(failed) + "."]
    lines += [
        "",
        f"Reproduce (as root, after `make setup`): `.venv/bin/python benchmarks/cluster_mixed.py --every {every:g}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=15.0, help="seconds between rebalance passes (default 15)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds each mode may take (default 1800)")
    parser.add_argument("--scale", type=int, default=1,
                        help="multiply every job's epochs (longer jobs give resizes time to pay); results go to "
                             "cluster_mixed_xSCALE.* when above 1")  # fmt: skip
    args = parser.parse_args()
    global JOBS
    JOBS = [job._replace(epochs=job.epochs * args.scale) for job in JOBS]
    fixed = run_mode("fixed", elastic=False, every=args.every, timeout=args.timeout)
    elastic = run_mode("elastic", elastic=True, every=args.every, timeout=args.timeout)
    data = {"fixed": fixed, "elastic": elastic, "every_s": args.every, "jobs": [s._asdict() for s in JOBS]}
    name = "cluster_mixed" if args.scale == 1 else f"cluster_mixed_x{args.scale}"
    write_results(name, data, markdown(fixed, elastic, args.every))


if __name__ == "__main__":
    main()
