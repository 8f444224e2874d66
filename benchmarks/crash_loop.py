"""Crash loop: SIGKILL the daemon at random points of its life while jobs are submitted, resized,
cancelled and finish, then restart it and check that nothing was lost or done twice.

Each round starts one to three actions at once as the cluster user (submit a short job, submit an
elastic job, cancel a job, resize a running elastic job), kills the daemon after a random delay
(0-1.5 s, so that requests, submissions and monitor cycles are cut at random points; one round in
five instead starts the daemon with a fault point that kills it exactly before or after ``sbatch``),
and restarts it. After every restart:

- the store passes SQLite's integrity check (opened read-only beside the daemon);
- every job whose ``run`` was acknowledged is listed by ``status``;
- no hpcsched tag is carried by two Slurm jobs (nothing submitted twice).

At the end every job is driven to a final state, and then: every Slurm job that carries this
store's tag is an attempt the store knows (no orphan), every job that reached Slurm has exactly
one Slurm job per tag, and each job's final state agrees with Slurm accounting.

Run as root after ``make setup``:

    .venv/bin/python benchmarks/crash_loop.py --kills 50 --seed 1

``tests/integration/test_crash_loop.py`` runs a short variant (5 kills) in the test suite; the
results of a full run are written to benchmarks/results/crash_loop.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import SITE, USER, user_env, workspace, write_results

from hpcsched.slurm import parse

REPO = Path(__file__).resolve().parents[1]
CLI = str(SITE / "bin" / "hpcsched")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY"}
SHORT = "import sys, time\ntime.sleep(float(sys.argv[1]))\nprint('done', flush=True)\n"
FAULTS = ("before_sbatch", "after_sbatch")


@dataclass
class Loop:
    root: Path
    rng: random.Random
    acknowledged: set[int] = field(default_factory=set)
    refused: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    fault_kills: int = 0
    problems: list[str] = field(default_factory=list)

    def hs(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], user=USER, group=USER, extra_groups=[],
                              env={**user_env(self.root), **(env or {})}, cwd=str(self.root / "work"),
                              capture_output=True, text=True, timeout=timeout)

    # --- the daemon ----------------------------------------------------------------------------

    def daemon_pid(self) -> int | None:
        out = self.hs("daemon", "status", "--json", timeout=30)
        if out.returncode != 0:
            return None
        return int(json.loads(out.stdout)["pid"])

    def start_daemon(self, fault: str | None = None) -> None:
        out = self.hs("daemon", "start", env={"HPCSCHED_FAULT": fault} if fault else None, timeout=60)
        if out.returncode != 0 and "already running" not in out.stderr:
            raise RuntimeError(f"daemon start failed: {out.stderr}")

    def kill_daemon(self) -> None:
        pid = self.daemon_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while self.daemon_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- what users do -------------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        out = self.hs("status", "--json")
        if out.returncode != 0:
            raise RuntimeError(f"status failed: {out.stderr}")
        return list(json.loads(out.stdout))

    def submit_short(self) -> None:
        seconds = f"{self.rng.uniform(0.5, 4):.1f}"
        self._run("short", "short.py", "--nodes", "1", "--name", "short", "--", seconds)

    def submit_elastic(self) -> None:
        self._run("elastic", "digits_cnn.py", "--nodes", "1-2", "--start-nodes", "1", "--name", "elastic",
                  "--", "--epochs", "6", "--checkpoint-every", "20", "--step-delay", "0.02")

    def _run(self, kind: str, *args: str) -> None:
        self.actions[f"submit {kind}"] += 1
        out = self.hs("run", "--json", *args)
        if out.returncode == 0:
            self.acknowledged.add(int(json.loads(out.stdout)["id"]))
        else:
            self.refused[f"run: {_last_line(out.stderr)}"] += 1

    def cancel_one(self, jobs: list[dict[str, Any]]) -> None:
        open_jobs = [j for j in jobs if j["state"] not in FINAL]
        if open_jobs:
            self.actions["cancel"] += 1
            out = self.hs("cancel", str(self.rng.choice(open_jobs)["id"]))
            if out.returncode != 0:
                self.refused[f"cancel: {_last_line(out.stderr)}"] += 1

    def resize_one(self, jobs: list[dict[str, Any]]) -> None:
        running = [j for j in jobs if j["name"] == "elastic" and j["state"] == "RUNNING" and j.get("elastic")]
        if running:
            job = self.rng.choice(running)
            self.actions["resize"] += 1
            out = self.hs("resize", str(job["id"]), "--nodes", "2" if job["nodes"] == 1 else "1")
            if out.returncode != 0:
                self.refused[f"resize: {_last_line(out.stderr)}"] += 1
            else:
                self.actions["resize accepted"] += 1

    def round(self) -> None:
        fault = self.rng.choice(FAULTS) if self.rng.random() < 0.2 else None
        self.start_daemon(fault)
        jobs = self.jobs()
        choices = [self.submit_short, self.submit_short, self.submit_elastic,
                   lambda: self.cancel_one(jobs), lambda: self.resize_one(jobs)]
        threads = [threading.Thread(target=self.rng.choice(choices)) for _ in range(self.rng.randint(1, 3))]
        for t in threads:
            t.start()
        time.sleep(self.rng.uniform(0, 1.5))
        died_at_fault = fault is not None and self.daemon_pid() is None
        self.kill_daemon()
        for t in threads:
            t.join(timeout=180)
        self.kills += 1
        self.fault_kills += died_at_fault
        self.start_daemon()
        self.check_after_restart()

    # --- checks --------------------------------------------------------------------------------

    def check_after_restart(self) -> None:
        result = self.read_store("PRAGMA integrity_check")
        if result != "ok":
            self.problems.append(f"after kill {self.kills}: integrity check says {result}")
        listed = {int(j["id"]) for j in self.jobs()}
        if lost := self.acknowledged - listed:
            self.problems.append(f"after kill {self.kills}: acknowledged jobs missing from status: {sorted(lost)}")
        if dupes := {tag: n for tag, n in Counter(r["tag"] for r in self.slurm_jobs(accounting=False)).items() if n > 1}:
            self.problems.append(f"after kill {self.kills}: tags on more than one Slurm job in the queue: {dupes}")

    def store(self) -> Path:
        """The daemon's store: one per login node (store-<host>.sqlite); this loop uses one host."""
        stores = sorted((self.root / "state").glob("store-*.sqlite"))
        if len(stores) != 1:
            raise RuntimeError(f"expected one store in {self.root / 'state'}, found {[s.name for s in stores]}")
        return stores[0]

    def store_id(self) -> str:
        """Read from the store itself, so that it is known while the daemon is down too."""
        return str(self.read_store("SELECT value FROM meta WHERE key='store_id'"))

    def read_store(self, query: str) -> Any:
        """The first value ``query`` reads from the store, opened read-only and closed again."""
        with closing(sqlite3.connect(f"file:{self.store()}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(query).fetchone()[0]

    def slurm_jobs(self, accounting: bool) -> list[dict[str, Any]]:
        """Every Slurm job (each run once) carrying this store's tag: the queue, and sacct if asked.
        Read with hpcsched's own parsers, which know every Slurm major's JSON."""
        prefix = f"hpcsched:{self.store_id()}:"
        if accounting:  # sacct lists the queued jobs too; one source, so no run is counted twice
            records = parse.parse_sacct(_slurm(["sacct", "--json", "-X", "--allusers", "--starttime=now-6hours",
                                                "--endtime=now"]))
        else:
            records = parse.parse_squeue(_slurm(["squeue", "--json", "--states=all"]))
        found = {r.job_id: {"slurm_id": r.job_id, "tag": r.comment, "state": r.state.value}
                 for r in records if r.comment.startswith(prefix)}
        return list(found.values())

    def drain(self, timeout: float = 900) -> list[dict[str, Any]]:
        """Let every job end: short ones finish, elastic ones too; cancel what is still open late."""
        self.start_daemon()
        deadline = time.monotonic() + timeout
        cancelled_rest = False
        while time.monotonic() < deadline:
            jobs = self.jobs()
            if all(j["state"] in FINAL for j in jobs):
                return jobs
            if not cancelled_rest and time.monotonic() > deadline - timeout / 2:
                for j in jobs:
                    if j["state"] not in FINAL:
                        self.hs("cancel", str(j["id"]))
                cancelled_rest = True
            time.sleep(2)
        raise RuntimeError(f"jobs still open after {timeout} s: {[j for j in self.jobs() if j['state'] not in FINAL]}")

    def final_checks(self, jobs: list[dict[str, Any]]) -> dict[str, Any]:
        time.sleep(5)  # sacct's view lags the controller by a moment
        recorded = {a["slurm_job_id"] for j in jobs for a in j["attempts"] if a["slurm_job_id"]}
        runs = self.slurm_jobs(accounting=True)
        orphans = sorted({r["slurm_id"] for r in runs} - recorded)
        if orphans:
            self.problems.append(f"Slurm jobs with this store's tag that no attempt records (orphans): {orphans}")
        dupes = {tag: n for tag, n in Counter(r["tag"] for r in runs).items() if n > 1}
        if dupes:
            self.problems.append(f"tags carried by more than one Slurm job (duplicates): {dupes}")
        slurm_state = {r["slurm_id"]: r["state"] for r in runs}
        disagree = []
        for j in jobs:
            last = j["attempts"][-1]["slurm_job_id"] if j["attempts"] else None
            if last in slurm_state and slurm_state[last] in FINAL and slurm_state[last] != j["state"]:
                disagree.append((j["id"], j["state"], slurm_state[last]))
        if disagree:
            self.problems.append(f"final states that disagree with sacct (job, ours, Slurm's): {disagree}")
        never = [j["id"] for j in jobs if not any(a["slurm_job_id"] for a in j["attempts"])]
        return {"jobs": len(jobs), "slurm_jobs": len(runs), "states": dict(Counter(j["state"] for j in jobs)),
                "never_reached_slurm": never, "orphans": orphans, "duplicates": dupes, "disagree": disagree}


def _slurm(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:120] if lines else "(no message)"


def prepare(name: str) -> Path:
    root = workspace(name)
    (root / "work" / "short.py").write_text(SHORT)
    (root / "work" / "digits_cnn.py").write_text((REPO / "examples" / "digits_cnn.py").read_text())
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(root / "work")], check=True)
    return root


def crash_loop(kills: int, seed: int, name: str = "crash_loop") -> dict[str, Any]:
    loop = Loop(prepare(name), random.Random(seed))
    started = time.monotonic()
    try:
        while loop.kills < kills:
            loop.round()
            print(f"kill {loop.kills}/{kills}: {len(loop.acknowledged)} jobs acknowledged, "
                  f"{len(loop.problems)} problems", file=sys.stderr, flush=True)
        final = loop.final_checks(loop.drain())
    finally:
        loop.hs("daemon", "stop")
        for job in loop.slurm_jobs(accounting=False):
            subprocess.run(["scancel", str(job["slurm_id"])], capture_output=True, timeout=30)
    return {
        "kills": loop.kills, "kills_at_fault_points": loop.fault_kills, "seed": seed,
        "clean_restarts": loop.kills if not loop.problems else None,
        "acknowledged_jobs": len(loop.acknowledged), "actions": dict(loop.actions),
        "refused": dict(loop.refused), "problems": loop.problems, "final": final,
        "seconds": round(time.monotonic() - started, 1),
    }


def table(result: dict[str, Any]) -> str:
    final = result["final"]
    rows = [
        ("daemon kills (at a fault point around sbatch)", f"{result['kills']} ({result['kills_at_fault_points']})"),
        ("jobs (acknowledged by run)", f"{final['jobs']} ({result['acknowledged_jobs']})"),
        ("Slurm jobs with the store's tag", str(final["slurm_jobs"])),
        ("final states", ", ".join(f"{k} {v}" for k, v in sorted(final["states"].items()))),
        ("orphaned / duplicated Slurm jobs", f"{len(final['orphans'])} / {len(final['duplicates'])}"),
        ("problems found", str(len(result["problems"]))),
        ("wall time", f"{result['seconds']:.0f} s"),
    ]
    lines = [f"# Crash loop ({time.strftime('%Y-%m-%d')}, seed {result['seed']}, {os.cpu_count()} cores)", "",
             "`.venv/bin/python benchmarks/crash_loop.py --kills 50` as root on the local cluster.", "",
             "| what | result |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], ""]
    if result["problems"]:
        lines += ["Problems:", "", *[f"- {p}" for p in result["problems"]], ""]
    lines += ["Actions: " + ", ".join(f"{k} {v}" for k, v in sorted(result["actions"].items())), ""]
    if result["refused"]:
        lines += ["Refused or cut requests (a request cut by the kill fails on the caller's side, as it should):", "",
                  *[f"- {n} x {k}" for k, n in sorted(result["refused"].items())], ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = crash_loop(args.kills, args.seed)
    write_results("crash_loop", result, table(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
