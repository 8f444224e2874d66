"""Benchmark (b): per-node start-up cost of hpcsched's container path against bare srun.

Both variants are batch scripts on the same 2 nodes that note the time just before `srun` and
run `torchrun` with a static rendezvous, whose worker prints the time it started:
- bare: srun runs torchrun from a host virtual environment with the same torch;
- hpcsched: srun runs the hpcsched launcher exactly as `hpcsched run` generates it
  (rootless Podman, overlay storage, runc, then torchrun in the training image).
The difference of the medians is the container overhead per node. Runs alternate.
Run as root after `make setup`:  .venv/bin/python benchmarks/container_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import time
from pathlib import Path

from common import SITE, USER, as_user, summary, workspace, write_results

TORCH_VENV = Path("/opt/hpcsched/bench-torch")
STAMP = "import os, time\nprint(f\"START {os.environ['GROUP_RANK']} {time.time():.6f}\", flush=True)\n"


def ensure_host_torch() -> None:
    if (TORCH_VENV / "bin" / "torchrun").exists():
        return
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(TORCH_VENV)], check=True)
    subprocess.run([str(TORCH_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0", "numpy"], check=True)
    subprocess.run(["chmod", "-R", "a+rX", str(TORCH_VENV)], check=True)


def batch(body: str, out: Path) -> str:
    return (f"#!/bin/bash\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n#SBATCH --output={out}\n"
            f"echo T0 $(date +%s.%N)\n{body}\n")


def starts(out: Path) -> list[float]:
    text = out.read_text()
    t0 = float(re.search(r"^T0 (\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    return [float(t) - t0 for t in re.findall(r"START \d+ (\S+)", text)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    ensure_host_torch()
    root = workspace("container")
    work = root / "work"
    (work / "stamp.py").write_text(STAMP)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(work)], check=True)
    dry = as_user([str(SITE / "bin" / "hpcsched"), "run", "stamp.py", "--nodes", "2", "--dry-run"], root).stdout
    launcher = re.search(r"^srun .*\\\n\s+(.*)$", dry, re.M).group(1)  # type: ignore[union-attr]
    torchrun = (f"{TORCH_VENV}/bin/torchrun --nnodes=2 --nproc-per-node=1 --node-rank=$SLURM_NODEID "
                f"--master-addr=$SLURM_LAUNCH_NODE_IPADDR --master-port=$((20000 + SLURM_JOB_ID % 10000)) "
                f"{work}/stamp.py")
    variants = {
        "bare srun + torchrun": f"srun --ntasks-per-node=1 bash -c {shlex.quote(torchrun)}",
        "hpcsched launcher + podman + torchrun": f"srun --ntasks-per-node=1 {launcher}",
    }
    per_node: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(runs):
        for name, body in variants.items():
            out = work / f"out-{i}-{len(name)}.txt"
            script = work / "bench.sh"
            script.write_text(batch(body, out))
            subprocess.run(["chown", f"{USER}:{USER}", str(script)], check=True)
            as_user(["sbatch", "--wait", "--quiet", str(script)], root, timeout=300)
            values = starts(out)
            assert len(values) == 2, out.read_text()
            per_node[name].extend(values)
    bare, cont = (summary(v) for v in per_node.values())
    added = cont["median"] - bare["median"]
    data = {"bare_start_s": bare, "container_start_s": cont, "added_per_node_median_s": added,
            "target_added_s": 2.0, "runs": runs, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "samples": per_node}
    table = (
        "# Per-node start-up: container path vs bare srun\n\n"
        f"Local cluster, 2 nodes, {runs} alternating runs per variant; seconds from just before `srun` "
        "to the start of the training process on each node (both variants run torchrun).\n\n"
        "| variant | median s | min s | max s |\n|---|---|---|---|\n"
        + "".join(f"| {k} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} |\n"
                  for k, s in zip(variants, (bare, cont), strict=True))
        + f"\nAdded per node by the container path (median): **{added:.2f} s** (target < 2 s).\n"
    )
    write_results("container_overhead", data, table)


if __name__ == "__main__":
    main()
