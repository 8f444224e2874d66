"""Benchmark (b): per-node start-up cost of hpcsched's container path against bare srun.

Both variants run on the same 2 nodes, note the time just before `srun` and run `torchrun` with a
static rendezvous, whose worker prints the time it started:
- bare: a batch script echoes the time, then srun runs torchrun from a host virtual environment;
- hpcsched: the job as `hpcsched run stamp.py --nodes 2` submits it; its driver records the time
  just before its srun (attempts/1/info.json "start_time"), srun runs the launcher (rootless
  Podman, overlay storage, runc, then torchrun in the training image).
The difference of the medians is the container overhead per node. Runs alternate.
Run as root after `make setup`:  .venv/bin/python benchmarks/container_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import time
from pathlib import Path

from common import SITE, USER, as_user, job_dir, summary, workspace, write_results

REPO = Path(__file__).resolve().parents[1]
TORCH_VENV = Path("/opt/hpcsched/bench-torch")
STAMP = "import os, time\nprint(f\"START {os.environ['GROUP_RANK']} {time.time():.6f}\", flush=True)\n"


def ensure_host_torch() -> Path:
    """A host virtual environment with torchrun: the dev one of this checkout, else one installed."""
    for venv in (TORCH_VENV, REPO / ".venv"):
        if (venv / "bin" / "torchrun").exists():
            return venv
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(TORCH_VENV)], check=True)
    subprocess.run([str(TORCH_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0", "numpy"], check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(TORCH_VENV)], check=True)
    return TORCH_VENV


def batch(body: str, out: Path) -> str:
    return (f"#!/bin/bash\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n#SBATCH --output={out}\n"
            f"echo T0 $(date +%s.%N)\n{body}\n")


def starts(text: str, t0: float) -> list[float]:
    return [float(t) - t0 for t in re.findall(r"START \d+ (\S+)", text)]


def bare_run(body: str, out: Path, root: Path) -> list[float]:
    script = out.with_suffix(".sh")
    script.write_text(batch(body, out))
    subprocess.run(["chown", f"{USER}:{USER}", str(script)], check=True)
    as_user(["sbatch", "--wait", "--quiet", str(script)], root, timeout=300)
    text = out.read_text()
    return starts(text, float(re.search(r"^T0 (\S+)", text, re.M).group(1)))  # type: ignore[union-attr]


def hpcsched_run(root: Path) -> list[float]:
    """Submit through the daemon, wait for attempt 1 to end; start times against the driver's."""
    submitted = as_user([str(SITE / "bin" / "hpcsched"), "run", "--json", "stamp.py", "--nodes", "2"], root)
    attempt = job_dir(root, int(json.loads(submitted.stdout)["id"])) / "attempts" / "1"
    deadline = time.monotonic() + 300
    while not (attempt / "end.json").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no end of {attempt} within 300 s")
        time.sleep(1)
    t0 = json.loads((attempt / "info.json").read_text())["start_time"]
    return starts((attempt.parent.parent / "attempt-1.log").read_text(), t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    venv = ensure_host_torch()
    root = workspace("container")
    work = root / "work"
    (work / "stamp.py").write_text(STAMP)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work)], check=True)
    torchrun = (f"{venv}/bin/torchrun --nnodes=2 --nproc-per-node=1 --node-rank=$SLURM_NODEID "
                f"--master-addr=$SLURM_LAUNCH_NODE_IPADDR --master-port=$((20000 + SLURM_JOB_ID % 10000)) "
                f"{work}/stamp.py")
    variants = ("bare srun + torchrun", "hpcsched launcher + podman + torchrun")
    per_node: dict[str, list[float]] = {k: [] for k in variants}
    as_user([str(SITE / "bin" / "hpcsched"), "daemon", "start"], root)
    try:
        for i in range(runs):
            bare_values = bare_run(f"srun --ntasks-per-node=1 bash -c {shlex.quote(torchrun)}", work / f"bare-{i}.txt", root)
            for name, values in zip(variants, (bare_values, hpcsched_run(root)), strict=True):
                assert len(values) == 2, f"{name} run {i}: {values}"
                per_node[name].extend(values)
    finally:
        as_user([str(SITE / "bin" / "hpcsched"), "daemon", "stop"], root)
    bare, cont = (summary(v) for v in per_node.values())
    added = cont["median"] - bare["median"]
    data = {"bare_start_s": bare, "container_start_s": cont, "added_per_node_median_s": added,
            "target_added_s": 2.0, "runs": runs, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "samples": per_node}
    table = (
        "# Per-node start-up: container path vs bare srun\n\n"
        "Regenerate (as root, after `make setup`): "
        f"`.venv/bin/python benchmarks/container_overhead.py --runs {runs}`\n\n"
        f"Local cluster, 2 nodes, {runs} alternating runs per variant; seconds from just before `srun` "
        "to the start of the training process on each node (both variants run torchrun; the hpcsched one "
        "from its driver's time just before its srun). Each run submits both variants back to back, on a "
        "cluster and host shared with other work, so both medians move with the load.\n\n"
        "| variant | median s | min s | max s |\n|---|---|---|---|\n"
        + "".join(f"| {k} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} |\n"
                  for k, s in zip(variants, (bare, cont), strict=True))
        + f"\nAdded per node by the container path (median): **{added:.2f} s** (target < 2 s).\n"
    )
    write_results("container_overhead", data, table)


if __name__ == "__main__":
    main()
