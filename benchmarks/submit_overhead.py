"""Benchmark (a): how long `hpcsched run` takes to return, against a bare `sbatch` of the same
generated batch script, measured side by side (alternating) on the local cluster.

The jobs are submitted with a begin time an hour ahead, so they queue without running, and are
cancelled at the end. The daemon is already running (as after a user's first command).
Run as root after `make setup`:  .venv/bin/python benchmarks/submit_overhead.py [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

from common import SITE, as_user, summary, timed, workspace, write_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    runs = ap.parse_args().runs
    root = workspace("submit")
    script = root / "work" / "train.py"
    script.write_text("print('hello')\n")
    subprocess.run(["chown", "hpcuser:hpcuser", str(script)], check=True)
    hs = [str(SITE / "bin" / "hpcsched")]
    as_user(hs + ["daemon", "start"], root)
    run_args = ["run", "train.py", "--nodes", "2", "--sbatch=--begin=now+1hour", "--json"]
    first = json.loads(as_user(hs + run_args, root).stdout)  # warm-up, and the script to resubmit
    batch = f"{first['job_dir']}/batch.sh"
    slurm_ids = [first["slurm_job_id"]]
    hpcsched_times: list[float] = []
    sbatch_times: list[float] = []
    for _ in range(runs):
        t, proc = timed(hs + run_args, root)
        hpcsched_times.append(t)
        slurm_ids.append(json.loads(proc.stdout)["slurm_job_id"])
        t, proc = timed(["sbatch", "--parsable", "--begin=now+1hour", batch], root)
        sbatch_times.append(t)
        slurm_ids.append(int(proc.stdout.strip().split(";")[0]))
    subprocess.run(["scancel", *map(str, slurm_ids)], check=True)
    as_user(hs + ["daemon", "stop"], root)
    a, b = summary(hpcsched_times), summary(sbatch_times)
    added = a["median"] - b["median"]
    data = {"hpcsched_run_s": a, "bare_sbatch_s": b, "added_median_s": added, "target_added_s": 0.3,
            "runs": runs, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    table = (
        "# Submission overhead: `hpcsched run` vs bare `sbatch`\n\n"
        f"Local cluster (Slurm 22.05, 3 emulated nodes), {runs} alternating runs, daemon running.\n\n"
        "| command | median s | min s | max s |\n|---|---|---|---|\n"
        f"| hpcsched run (returns with the Slurm id) | {a['median']:.3f} | {a['min']:.3f} | {a['max']:.3f} |\n"
        f"| sbatch of the same batch script | {b['median']:.3f} | {b['min']:.3f} | {b['max']:.3f} |\n\n"
        f"Added by hpcsched (median): **{added:.3f} s** (target < 0.3 s).\n"
    )
    write_results("submit_overhead", data, table)


if __name__ == "__main__":
    main()
