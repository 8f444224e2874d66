"""How long one site coordinator pass takes: 1,000 elastic jobs of 100 users on 512 nodes.

    .venv/bin/python benchmarks/site_pass.py

A pass as the coordinator runs it after its ``squeue`` and ``sinfo``: the agents' 1,000 reports
checked (:func:`hpcsched.site.views.view_from_json`, the socket's validation), then the decision
(:func:`hpcsched.site.decide.decide`: the good-citizen rules over a queue that also holds 400
other users' plain jobs, 200 running and 200 waiting, and the allocator with fairness between
users). The jobs' models are the six Pollux applications with per-job noise; half the elastic
jobs run (packed onto the nodes), half wait. Whole nodes, one partition. CPU time of one process,
cold caches, 5 passes. Target: median < 1 s. Writes benchmarks/results/site_pass.{md,json}.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from hpcsched.allocator import ElasticJob, GoodputModel, RestartCost
from hpcsched.allocator.candidates import clear_caches
from hpcsched.jobs.model import JobState
from hpcsched.models import GradientNoise
from hpcsched.simulator.data import data_dir, default_applications
from hpcsched.site.citizen import Partition
from hpcsched.site.decide import Reported, decide
from hpcsched.site.views import view_from_json, view_to_json
from hpcsched.slurm.parse import SlurmJobRecord

RESULTS = Path(__file__).resolve().parent / "results"
NODES, JOBS, USERS, RIGID_RUNNING, RIGID_WAITING, REPEATS = 512, 1000, 100, 200, 200, 5


def record(job_id: int, uid: int, state: JobState, nodes: int, node_list: str = "", reason: str = "None") -> SlurmJobRecord:
    return SlurmJobRecord(job_id, f"j{job_id}", "", state.value, state, reason, nodes, node_list, float(job_id), None, None,
                          None, 0, f"u{uid}", uid, "gpu", 1000 - job_id % 1000)


def workload(seed: int = 0) -> tuple[Partition, list[SlurmJobRecord], dict[int, dict[str, object]]]:
    """The partition, the queue and the agents' reports as JSON (what reaches the socket)."""
    apps = list(default_applications(data_dir()).values())
    rng = np.random.default_rng(seed)
    free = list(range(NODES))
    queue: list[SlurmJobRecord] = []
    states: dict[str, str] = {}

    def take(n: int) -> str:
        picked = [free.pop() for _ in range(min(n, len(free)))]
        for p in picked:
            states[f"g{p:04d}"] = "alloc"
        return ",".join(f"g{p:04d}" for p in picked)

    reports: dict[int, dict[str, object]] = {}
    for i in range(JOBS):
        app = apps[i % len(apps)]
        noise = app.noise(app.base_bsz, int(rng.integers(0, len(app.epoch_ends))))
        noise = GradientNoise(noise.grad_sqr * float(rng.uniform(0.5, 2.0)), noise.grad_var)
        high = int(min(app.max_gpus, rng.choice([2, 4, 8, 16])))
        size = int(rng.choice([1, 2, 4])) if i % 2 == 0 and len(free) > 8 else 0
        size = min(size, high)
        sid = 10_000 + i
        uid = 2000 + i % USERS
        if size:
            queue.append(record(sid, uid, JobState.RUNNING, size, take(size)))
        else:
            queue.append(record(sid, uid, JobState.PENDING, 1, reason="Priority"))
        view = ElasticJob(key=str(sid), model=GoodputModel(app.params, noise, app.limits), min_gpus=1, max_gpus=high,
                          current_gpus=size, remaining_work=float(rng.uniform(0.01, 1.0)) * app.total_work,
                          age_s=float(rng.uniform(0, 36000)), time_in_state_s=float(rng.uniform(0, 7200)),
                          time_at_size_s=float(rng.uniform(60, 7200)), restarts=int(rng.integers(0, 4)),
                          restart=RestartCost(queue_wait_s=60.0))
        reports[sid] = {"uid": uid, "view": view_to_json(view)}
    for i in range(RIGID_RUNNING):
        queue.append(record(50_000 + i, 3000 + i % 50, JobState.RUNNING, 1, take(1)))
    for i in range(RIGID_WAITING):
        queue.append(record(60_000 + i, 3000 + i % 50, JobState.PENDING, int(rng.choice([1, 2, 4])), reason="Resources"))
    for p in range(NODES):
        states.setdefault(f"g{p:04d}", "idle")
    return Partition("gpu", states), queue, reports


def one_pass(partition: Partition, queue: list[SlurmJobRecord], raw: dict[int, dict[str, object]]) -> tuple[float, float, int]:
    """(seconds checking reports, seconds deciding, decisions that execute)."""
    clear_caches()
    start = time.process_time()
    reports = {}
    for sid, r in raw.items():
        user = f"u{r['uid']}"
        reports[sid] = Reported(sid, int(str(r["uid"])), user, sid, "train", view_from_json(str(sid), r["view"], user))
    checked = time.process_time()
    plan = decide({"gpu": partition}, queue, reports)
    decided = time.process_time()
    assert len(plan.decisions) == JOBS
    return checked - start, decided - checked, sum(1 for d in plan.decisions if d.executes)


def main() -> None:
    partition, queue, raw = workload()
    runs = [one_pass(partition, queue, raw) for _ in range(REPEATS)]
    parts = {"reports checked": [a for a, _, _ in runs], "decision": [b for _, b, _ in runs],
             "whole pass": [a + b for a, b, _ in runs]}
    median = statistics.median(parts["whole pass"])
    result = {"nodes": NODES, "elastic_jobs": JOBS, "users": USERS, "rigid_running": RIGID_RUNNING,
              "rigid_waiting": RIGID_WAITING, "seconds": parts, "median_total_s": median, "executing_decisions": runs[0][2]}
    lines = [
        "# Site coordinator: one pass for 1,000 elastic jobs of 100 users on 512 nodes", "",
        f"{JOBS} elastic jobs of {USERS} users (half running, half waiting), {RIGID_RUNNING} running and "
        f"{RIGID_WAITING} waiting plain jobs of 50 other users, one partition of {NODES} whole nodes. CPU time of one "
        f"process, cold caches, {REPEATS} passes. Command: `.venv/bin/python benchmarks/site_pass.py`.", "",
        "| part | median (s) | min (s) | max (s) |", "|---|---:|---:|---:|",
        *(f"| {name} | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} |" for name, t in parts.items()), "",
        f"Target: whole pass median < 1 s: **{'yes' if median < 1.0 else 'NO'}**. Decisions that resize a job in the "
        f"first pass: {runs[0][2]}.", "",
        f"{platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}.", "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "site_pass.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "site_pass.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
