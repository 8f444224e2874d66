"""Benchmark: hpcsched's load on slurmctld as the number of users grows, personal mode against
site mode, side by side in one run (sdiag's RPC counts by user).

For 1, 10 and 50 real local accounts (hpcl01 ... hpcl50, created if missing), each with its own
daemon and one elastic job that waits in the queue (``--begin`` three hours ahead, so nothing
runs and the cluster stays free), the daemons are left to settle, sdiag's counters are reset,
and after a window the Slurm RPCs of those users (and, in site mode, of the coordinator's service
account) are counted. Personal mode: every daemon polls Slurm itself. Site mode: the daemons take
their jobs' states from the coordinator, which polls Slurm once for everybody.

Run as root after `make setup` (the coordinator runs: cluster/site-coordinator start):
    .venv/bin/python benchmarks/site_load.py [--window 120] [--users 1,10,50]
Target (site mode): RPCs per minute with 50 users <= 1.2x the figure with 1 user.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import SITE, write_results

SOCKET = "/run/hpcsched-site/coordinator.sock"
SERVICE = "hpcsite"
BASE = Path("/tmp/hpcsched-bench/site-load")
REPO = Path(__file__).resolve().parents[1]
SETTLE_S = 45.0
SDIAG_USER = re.compile(r"^\s+(\S+)\s+\(\s*(\d+)\)\s+count:(\d+)")


def account(n: int) -> str:
    name = f"hpcl{n:02d}"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    return name


def env(user: str, site: bool) -> dict[str, str]:
    pw = pwd.getpwnam(user)
    root = BASE / user
    out = {"PATH": f"{SITE}/bin:/usr/bin:/bin", "HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
           "HPCSCHED_STATE_DIR": str(root / "state"), "HPCSCHED_JOBS_DIR": str(root / "jobs")}
    if site:
        out["HPCSCHED_COORDINATOR_SOCKET"] = SOCKET
    return out


def hs(user: str, site: bool, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SITE / "bin" / "hpcsched"), *args], user=user, group=user, extra_groups=[],
                          env=env(user, site), cwd=str(BASE / user / "work"), capture_output=True, text=True,
                          timeout=120, check=True)


def prepare(user: str) -> None:
    root = BASE / user
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("work", "state", "jobs"):
        (root / sub).mkdir(parents=True)
    (root / "work" / "train.py").write_text("print('never runs: the job waits for its begin time')\n")
    pw = pwd.getpwnam(user)
    for p in [BASE, root, *root.iterdir(), root / "work" / "train.py"]:
        os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(BASE, 0o755)


def sdiag_counts() -> dict[str, int]:
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    section = out.split("Remote Procedure Call statistics by user", 1)[1].split("Pending RPC", 1)[0]
    return {m.group(1): int(m.group(3)) for line in section.splitlines() if (m := SDIAG_USER.match(line))}


def measure(users: list[str], site: bool, window: float) -> dict[str, float]:
    for u in users:
        prepare(u)
        hs(u, site, "run", "--json", "--nodes", "1-2", "--sbatch=--begin=now+3hours", "train.py")
    time.sleep(SETTLE_S)  # submissions settled, personal daemons backed off to their idle cadence
    subprocess.run(["sdiag", "--reset"], check=True, capture_output=True)
    time.sleep(window)
    counts = sdiag_counts()
    users_rpcs = sum(counts.get(u, 0) for u in users)
    service = counts.get(SERVICE, 0) if site else 0
    for u in users:  # these accounts exist for this benchmark only: nothing else of theirs is cancelled
        subprocess.run(["scancel", "-u", u], capture_output=True)
        subprocess.run([str(SITE / "bin" / "hpcsched"), "daemon", "stop"], user=u, group=u, env=env(u, site),
                       cwd="/", capture_output=True, timeout=60)
    per_min = 60.0 / window
    return {"users_rpc_per_min": users_rpcs * per_min, "service_rpc_per_min": service * per_min,
            "total_rpc_per_min": (users_rpcs + service) * per_min}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=120.0)
    ap.add_argument("--users", default="1,10,50")
    a = ap.parse_args()
    sizes = [int(x) for x in a.users.split(",")]
    subprocess.run([str(REPO / "cluster" / "site-coordinator"), "start"], check=True, capture_output=True)
    rows: dict[str, dict[int, dict[str, float]]] = {"personal": {}, "site": {}}
    for n in sizes:
        users = [account(i) for i in range(1, n + 1)]
        for mode in ("personal", "site"):
            rows[mode][n] = measure(users, mode == "site", a.window)
            print(f"{mode} mode, {n} users: {rows[mode][n]}", file=sys.stderr)
    first, last = sizes[0], sizes[-1]
    ratio = rows["site"][last]["total_rpc_per_min"] / max(rows["site"][first]["total_rpc_per_min"], 1e-9)
    lines = ["# hpcsched's Slurm RPCs per minute as users grow: personal mode vs site mode", "",
             f"sdiag's RPC counts by user over a {a.window:.0f} s window, after {SETTLE_S:.0f} s of settling; each user "
             "has a daemon and one elastic job waiting in the queue (begin time 3 h ahead). Site mode counts the "
             f"coordinator's service account too (pass every 5 s on the local cluster). {time.strftime('%Y-%m-%d')}. "
             "Command: `.venv/bin/python benchmarks/site_load.py`.", "",
             "| users | personal: users' RPC/min | site: users' RPC/min | site: coordinator's | site: total |",
             "|---:|---:|---:|---:|---:|"]
    for n in sizes:
        p, s = rows["personal"][n], rows["site"][n]
        lines.append(f"| {n} | {p['users_rpc_per_min']:.1f} | {s['users_rpc_per_min']:.1f} | "
                     f"{s['service_rpc_per_min']:.1f} | {s['total_rpc_per_min']:.1f} |")
    lines += ["", f"Site mode, {last} users vs {first}: {ratio:.2f}x (target <= 1.2x: "
              f"{'met' if ratio <= 1.2 else 'NOT met'}).", "",
              "What this measures: idle phases (nothing changes, so a personal daemon has backed off to one `squeue` a "
              "minute); while its jobs change state a personal daemon polls every 5 s. The coordinator's figure is set "
              "by its pass interval (5 s here, 10 s by default), whatever the number of users.", "",]
    write_results("site_load", {"window_s": a.window, "rows": rows, "ratio": ratio}, "\n".join(lines))


if __name__ == "__main__":
    main()
