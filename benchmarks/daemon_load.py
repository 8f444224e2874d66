"""Load on the daemon (reliability H1, H3): a burst of concurrent ``run`` requests from several real
users, and a store holding 10,000 jobs.

Burst (and, side by side in the same run, the baseline: the same burst with each ``run`` answered
only after its own sbatch, as before): every user's daemon gets ``--requests`` ``run`` requests split over the users, sent by
``--concurrency`` threads per user at once over the socket (as the CLI sends them), while another
thread per user asks for ``status`` every 0.2 s. Jobs are submitted held (``--hold``), so the burst
measures the daemon and ``sbatch``, not the three emulated nodes; they are cancelled afterwards.
Reported: p50/p99 of the ``run`` acknowledgement and of ``status``, how many requests were accepted
or refused with back-pressure, and whether any job was stored or submitted twice.

Store: 10,000 finished jobs written into a fresh store, then the daemon started on it: its
resident memory after a few monitor cycles, the Slurm calls it makes per cycle, and ``status``
latency. Targets: p99 < 1 s for both requests; < 150 MB resident with 10,000 jobs.

Run as root after ``make setup``:  .venv/bin/python benchmarks/daemon_load.py [--requests 500]
The users are ``$HPCSCHED_LOAD_USERS`` (default: hpcuser and hpcuser2 where they exist).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


# --- worker: runs as one user, with the installed hpcsched --------------------------------------

def worker(requests: int, concurrency: int, script: str, submit_now: bool) -> dict[str, Any]:
    from hpcsched.config import Settings
    from hpcsched.daemon import client
    from hpcsched.errors import HpcschedError

    settings = Settings.from_env()
    request = {"script": script, "workdir": os.path.dirname(script), "name": "load", "nodes": "1",
               "sbatch": ["--hold"]}
    run_times: list[float] = []
    status_times: list[float] = []
    outcomes: Counter[str] = Counter()
    ids: list[int] = []
    lock = threading.Lock()
    todo = iter(range(requests))
    done = threading.Event()

    def send_runs() -> None:
        for _ in iter(lambda: next(todo, None), None):
            start = time.perf_counter()
            try:  # submit_now false is what the CLI sends: answered once recorded, sbatch follows
                job = client.call(settings, "run", {"request": request, "submit_now": submit_now}, timeout=300)
                outcome = "accepted"
            except HpcschedError as e:
                job, outcome = None, f"refused: {str(e)[:80]}"
            with lock:
                run_times.append(time.perf_counter() - start)
                outcomes[outcome] += 1
                if job is not None:
                    ids.append(int(job["id"]))

    def ask_status() -> None:
        while not done.is_set():
            start = time.perf_counter()
            try:
                client.call(settings, "status", {"limit": 100}, timeout=300)
                status_times.append(time.perf_counter() - start)
            except HpcschedError as e:
                outcomes[f"status refused: {str(e)[:80]}"] += 1
            time.sleep(0.2)

    watcher = threading.Thread(target=ask_status)
    watcher.start()
    senders = [threading.Thread(target=send_runs) for _ in range(concurrency)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    sent = time.perf_counter()
    while any(j["slurm_job_id"] is None and j["state"] == "SUBMITTING"
              for j in client.call(settings, "status", {"limit": 100_000}, timeout=300)):
        time.sleep(0.2)
    in_slurm = time.perf_counter() - sent
    done.set()
    watcher.join()
    return {"run": run_times, "status": status_times, "outcomes": dict(outcomes), "ids": ids,
            "all_in_slurm_after_s": in_slurm}


# --- driver: runs as root -------------------------------------------------------------------------

SITE = Path(os.environ.get("HPCSCHED_SITE_VENV", "/opt/hpcsched/venv"))
RESULTS = HERE.parent / "results"


def users() -> list[str]:
    wanted = os.environ.get("HPCSCHED_LOAD_USERS", "hpcuser,hpcuser2").split(",")
    present = []
    for name in wanted:
        try:
            pwd.getpwnam(name)
            present.append(name)
        except KeyError:
            pass
    return present


def workspace(user: str, name: str) -> tuple[Path, dict[str, str]]:
    pw = pwd.getpwnam(user)
    root = Path("/tmp/hpcsched-bench") / f"{name}-{user}"
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("work", "state", "jobs"):
        (root / sub).mkdir(parents=True, mode=0o700)
    (root / "work" / "load.py").write_text("print('held jobs never run')\n")
    shutil.copy(HERE, root / "work" / "daemon_load.py")
    os.chmod(root.parent, 0o755)
    subprocess.run(["chown", "-R", f"{user}:{user}", str(root)], check=True)
    env = {"PATH": f"{SITE}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": pw.pw_dir, "USER": user, "LOGNAME": user,
           "LANG": "C.UTF-8", "HPCSCHED_STATE_DIR": str(root / "state"), "HPCSCHED_JOBS_DIR": str(root / "jobs"),
           "HPCSCHED_POLL_INTERVAL": "5"}
    return root, env


def as_user(user: str, env: dict[str, str], argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, user=user, group=user, extra_groups=[], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd="/")


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"n": len(values), "p50": round(statistics.median(ordered), 4), "p99": round(p99, 4),
            "max": round(ordered[-1], 4)}


def tagged_slurm_jobs(store_ids: list[str]) -> dict[str, list[int]]:
    """The Slurm ids in the queue carrying each tag of these stores (and no other user's job)."""
    out = subprocess.run(["squeue", "--json"], capture_output=True, text=True, check=True, timeout=120).stdout
    tags: dict[str, list[int]] = {}
    for job in json.loads(out)["jobs"]:
        comment = str(job.get("comment") or "")
        if any(comment.startswith(f"hpcsched:{s}:") for s in store_ids):
            tags.setdefault(comment, []).append(int(job["job_id"]))
    return tags


def burst(requests: int, concurrency: int, submit_now: bool) -> dict[str, Any]:
    names = users()
    sessions = {u: workspace(u, "load") for u in names}
    for user, (_root, env) in sessions.items():
        out = as_user(user, env, [str(SITE / "bin" / "hpcsched"), "daemon", "start"])
        assert out.returncode == 0, out.stderr
    share = requests // len(names)
    results: dict[str, dict[str, Any]] = {}

    def drive(user: str) -> None:
        root, env = sessions[user]
        argv = [str(SITE / "bin" / "python"), str(root / "work" / "daemon_load.py"), "--worker",
                "--requests", str(share), "--concurrency", str(concurrency), "--script", str(root / "work" / "load.py"),
                *(["--submit-now"] if submit_now else [])]
        out = as_user(user, env, argv)
        assert out.returncode == 0, out.stderr
        results[user] = json.loads(out.stdout)

    started = time.monotonic()
    threads = [threading.Thread(target=drive, args=(u,)) for u in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    store_ids, stored, memory = [], 0, {}
    for user, (_root, env) in sessions.items():
        ping = json.loads(as_user(user, env, [str(SITE / "bin" / "hpcsched"), "daemon", "status", "--json"]).stdout)
        store_ids.append(str(ping["store_id"]))
        memory[user] = round(_rss_mb(int(ping["pid"])), 1)
        status = json.loads(as_user(user, env, [str(SITE / "bin" / "hpcsched"), "status", "--json"]).stdout)
        stored += len(status)
    time.sleep(3)  # the daemons finish what they accepted
    tags = tagged_slurm_jobs(store_ids)
    ours = sorted(i for ids in tags.values() for i in ids)
    for start in range(0, len(ours), 200):  # only the burst's jobs: the users may have others
        subprocess.run(["scancel", *map(str, ours[start:start + 200])], capture_output=True, timeout=120)
    for user, (_root, env) in sessions.items():
        as_user(user, env, [str(SITE / "bin" / "hpcsched"), "daemon", "stop"])
    ids = [i for r in results.values() for i in r["ids"]]
    outcomes: Counter[str] = Counter()
    for r in results.values():
        outcomes.update(r["outcomes"])
    return {
        "users": names, "requests": share * len(names), "concurrency_per_user": concurrency, "wall_s": round(wall, 1),
        "run_ack": percentiles([t for r in results.values() for t in r["run"]]),
        "status": percentiles([t for r in results.values() for t in r["status"]]),
        "outcomes": dict(outcomes),
        "accepted_ids_unique": len(ids) == len({(u, i) for u, r in results.items() for i in r["ids"]}),
        "jobs_stored": stored, "slurm_jobs_tagged": len(ours),
        "tags_on_two_slurm_jobs": sum(1 for ids in tags.values() if len(ids) > 1), "daemon_rss_mb": memory,
        "all_in_slurm_after_last_ack_s": round(max(r["all_in_slurm_after_s"] for r in results.values()), 1),
    }


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def big_store(jobs: int) -> dict[str, Any]:
    """A store with ``jobs`` finished jobs: the daemon's memory and ``status`` latency on it."""
    user = users()[0]
    root, env = workspace(user, "store")
    fill = (
        "import sys, time\n"
        "from hpcsched.daemon.store import Store\n"
        "from hpcsched.config import Settings\n"
        "from hpcsched.jobs.model import JobState\n"
        "s = Store(Settings.from_env().store_path); now = time.time() - 86400\n"
        "for i in range(int(sys.argv[2])):\n"
        "    j = s.create_job(name=f'old{i}', uid=int(sys.argv[3]), user=sys.argv[4], request={'script': '/x.py',"
        " 'workdir': '/tmp', 'nodes': '1'}, nodes=1, jobs_root=sys.argv[5], now=now + i)\n"
        "    s.update_attempt(j, 1, now + i + 1, slurm_job_id=10_000_000 + i, state=JobState.COMPLETED, end_time=now + i + 60)\n"
    )
    pw = pwd.getpwnam(user)
    out = as_user(user, env, [str(SITE / "bin" / "python"), "-c", fill, "-", str(jobs),
                              str(pw.pw_uid), user, str(root / "jobs")])
    assert out.returncode == 0, out.stderr
    hs = str(SITE / "bin" / "hpcsched")
    assert as_user(user, env, [hs, "daemon", "start"]).returncode == 0
    time.sleep(12)  # a few monitor cycles
    ping = json.loads(as_user(user, env, [hs, "daemon", "status", "--json"]).stdout)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        listed = as_user(user, env, [hs, "status", "--json"])
        times.append(time.perf_counter() - start)
        assert listed.returncode == 0, listed.stderr
    rss = _rss_mb(int(ping["pid"]))
    as_user(user, env, [hs, "daemon", "stop"])
    return {"jobs": jobs, "daemon_rss_mb": round(rss, 1), "status_cli_s": percentiles(times)}


def _row(what: str, p: dict[str, float]) -> str:
    return f"| {what} | {p.get('p50')} | {p.get('p99')} | {p.get('max')} | {p['n']} | p99 < 1 s |"


def table(data: dict[str, Any]) -> str:
    b, s = data["burst"], data["store"]
    cli = s["status_cli_s"]
    return "\n".join([
        f"# Daemon load ({data['date']}, {data['cores']} cores)", "",
        "`.venv/bin/python benchmarks/daemon_load.py` as root on the local cluster.", "",
        f"Burst: {b['requests']} `run` requests from {len(b['users'])} users ({', '.join(b['users'])}), "
        f"{b['concurrency_per_user']} at once per user, over {b['wall_s']} s. The baseline is the same burst "
        "answered only after each job's sbatch (the socket's submit_now, as `run` worked before).", "",
        "| what | p50 | p99 | max | n | target |", "|---|---|---|---|---|---|",
        _row("`run` acknowledged (s)", b["run_ack"]),
        _row("`status` during the burst (s)", b["status"]),
        _row("baseline: `run` answered after its sbatch (s)", data["baseline"]["run_ack"]),
        _row("baseline: `status` during that burst (s)", data["baseline"]["status"]),
        "",
        "Outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(b["outcomes"].items())) + "; every accepted job "
        f"had its Slurm id {b['all_in_slurm_after_last_ack_s']} s after the last acknowledgement.",
        f"Jobs stored {b['jobs_stored']}, Slurm jobs carrying their tags {b['slurm_jobs_tagged']}, "
        f"tags on two Slurm jobs {b['tags_on_two_slurm_jobs']}. Daemon resident memory after the burst (MB): "
        + ", ".join(f"{u} {m}" for u, m in b["daemon_rss_mb"].items()) + ".", "",
        f"Store with {s['jobs']:,} finished jobs: daemon resident memory {s['daemon_rss_mb']} MB (target < 150 MB); "
        f"`hpcsched status --json` (CLI, whole process) median {cli['p50']} s, max {cli['max']} s.", "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50, help="threads per user sending run requests")
    parser.add_argument("--store-jobs", type=int, default=10_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--submit-now", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--script", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.requests, args.concurrency, args.script, args.submit_now)))
        return 0
    data = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
            "burst": burst(args.requests, args.concurrency, submit_now=False),
            "baseline": burst(args.requests, args.concurrency, submit_now=True), "store": big_store(args.store_jobs)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "daemon_load.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    text = table(data)
    (RESULTS / "daemon_load.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
