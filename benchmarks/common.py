"""Shared helpers for the benchmarks: run commands as the cluster user, time them, write results."""

from __future__ import annotations

import json
import os
import pwd
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

USER = os.environ.get("HPCSCHED_USER", "hpcuser")
SITE = Path(os.environ.get("HPCSCHED_SITE_VENV", "/opt/hpcsched/venv"))
RESULTS = Path(__file__).resolve().parent / "results"
EXTRA_ENV: dict[str, str] = {}  # added to the user's environment (e.g. site mode's coordinator socket)


def user_env(root: Path) -> dict[str, str]:
    pw = pwd.getpwnam(USER)
    return {
        "PATH": f"{SITE}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": pw.pw_dir, "USER": USER,
        "LOGNAME": USER, "LANG": "C.UTF-8", "HPCSCHED_STATE_DIR": str(root / "state"),
        "HPCSCHED_JOBS_DIR": str(root / "jobs"), "HPCSCHED_POLL_INTERVAL": "1", **EXTRA_ENV,
    }


def workspace(name: str) -> Path:
    root = Path("/tmp/hpcsched-bench") / name
    if (root / "state").exists():  # a daemon left by an interrupted run must not outlive its state directory
        subprocess.run([str(SITE / "bin" / "hpcsched"), "daemon", "stop"], user=USER, group=USER, extra_groups=[],
                       env=user_env(root), cwd="/", capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", str(root)], check=True)
    for sub in ("work", "state", "jobs"):
        (root / sub).mkdir(parents=True)
    pw = pwd.getpwnam(USER)
    for p in [root.parent, root, *root.iterdir()]:
        os.chown(p, pw.pw_uid, pw.pw_gid)
    return root


def as_user(argv: list[str], root: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, user=USER, group=USER, extra_groups=[], env=user_env(root),
                          cwd=str(root / "work"), capture_output=True, text=True, check=True, **kw)


def timed(argv: list[str], root: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = as_user(argv, root)
    return time.perf_counter() - start, proc


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def write_results(name: str, data: dict[str, Any], table: str, echo: bool = True) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")  # strict JSON
    (RESULTS / f"{name}.md").write_text(table)
    if echo:
        print(table)


def read_results(name: str, field: str) -> dict[str, Any]:
    """``field`` of ``results/<name>.json`` ({} before the first run): what an incremental
    benchmark has recorded so far."""
    path = RESULTS / f"{name}.json"
    return dict(json.loads(path.read_text()).get(field, {})) if path.exists() else {}


def simulated(metrics: dict[str, Any], began: float) -> dict[str, Any]:
    """The figures a simulator benchmark records per run, with the CPU seconds since ``began``."""
    keys = ("avg_jct", "worst_ftf", "restarts_per_job", "utilisation")
    return {**{k: float(metrics[k]) for k in keys}, "cpu_s": round(time.perf_counter() - began, 1)}


def job_dir(root: Path, job_id: int) -> Path:
    """A job's directory under the workspace: ``<store id>-<id>`` (``<id>`` for older stores)."""
    found = sorted((root / "jobs").glob(f"*-{job_id}"))
    return found[0] if found else root / "jobs" / str(job_id)


def trial_shape(trial: str) -> tuple[int, int]:
    """(channels, depth) of a search trial named ``cC-dD`` (examples/digits_nas.py); ValueError otherwise."""
    parts = trial.split("-")
    if len(parts) != 2 or parts[0][:1] != "c" or parts[1][:1] != "d" or not (parts[0][1:] + parts[1][1:]).isdigit():
        raise ValueError(f"trial {trial!r} is not cC-dD, e.g. c16-d2")
    return int(parts[0][1:]), int(parts[1][1:])
