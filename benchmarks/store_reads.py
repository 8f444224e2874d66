"""How long the store takes to list every open job with its attempts, which the daemon's monitor
does several times a cycle (reliability H3).

    .venv/bin/python benchmarks/store_reads.py [--jobs 10000] [--repeats 5]

Synthetic data, no cluster: a fresh store holding ``--jobs`` open jobs (one attempt each; every
tenth requeued once more), written straight into SQLite. Side by side: ``Store.open_jobs`` (the
attempts of all open jobs in one query) and the baseline, the earlier way of one attempts query
per job. Reported: the median of ``--repeats`` calls of each, and whether both give the same jobs.
Writes benchmarks/results/store_reads.*.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from common import summary, write_results

from hpcsched.daemon import store as store_module
from hpcsched.daemon.store import Store
from hpcsched.jobs.model import Job


def fill(path: str, jobs: int) -> None:
    """``jobs`` open jobs, as the daemon records them, in one transaction."""
    Store(path).close()
    request = json.dumps({"script": "/w/train.py", "workdir": "/w", "nodes": "1-4"})
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO jobs (id, name, uid, user, state, request, created, job_dir, nonce) "
                       "VALUES (?,?,?,?,?,?,?,?,?)",
                       [(i, f"job{i}", 1000, "alice", "RUNNING", request, 1.0 * i, f"/jobs/s-{i}", "n")
                        for i in range(1, jobs + 1)])
        db.executemany("INSERT INTO attempts (job_id, number, reason, state, nodes, slurm_job_id, log_path) "
                       "VALUES (?,?,?,?,?,?,?)",
                       [(i, n, "submit" if n == 1 else "requeue", "RUNNING", 2, 10 * i + n, f"/jobs/s-{i}/a{n}.log")
                        for i in range(1, jobs + 1) for n in range(1, 3 if i % 10 == 0 else 2)])


def one_query_per_job(store: Store) -> list[Job]:
    """The baseline: the open jobs, then each job's attempts with a query of its own."""
    db = store._db
    rows = db.execute("SELECT * FROM jobs WHERE state NOT IN ('COMPLETED','FAILED','CANCELLED') ORDER BY id")
    return [store_module._job(r, [store_module._attempt(a) for a in db.execute(
        "SELECT * FROM attempts WHERE job_id=? ORDER BY number", (r["id"],))]) for r in rows.fetchall()]


def timed(read: Callable[[], list[Job]], repeats: int) -> tuple[list[float], list[Job]]:
    seconds, jobs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        jobs = read()
        seconds.append(time.perf_counter() - start)
    return seconds, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "store.sqlite")
        fill(path, args.jobs)
        store = Store(path)
        baseline, before = timed(lambda: one_query_per_job(store), args.repeats)
        batched, after = timed(store.open_jobs, args.repeats)
        store.close()
    data = {"jobs": args.jobs, "one_query_per_job_s": summary(baseline), "one_query_s": summary(batched),
            "same_jobs": before == after and len(after) == args.jobs}
    table = (f"# Store.open_jobs with {args.jobs:,} open jobs (median of {args.repeats})\n\n"
             "| attempts loaded | seconds |\n|---|---|\n"
             f"| one query per job (before) | {data['one_query_per_job_s']['median']:.3f} |\n"
             f"| one query for all jobs | {data['one_query_s']['median']:.3f} |\n\n"
             f"Same jobs from both: {data['same_jobs']}.\n")
    write_results("store_reads", data, table)


if __name__ == "__main__":
    main()
