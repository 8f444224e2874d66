"""The Slurm requests people really write, on the local cluster (issue 14, item 6): with the
memory default (mem_per_cpu) two small 1-node jobs in partition debug share one node instead of
each taking all of its memory."""

from __future__ import annotations

import subprocess

from conftest import UserSession, node

# Each job marks that it started, then waits for the other's mark: both complete only if Slurm
# ran them at the same time. The wait is bounded so a job never blocks the cluster.
MEET = """\
import pathlib, sys, time
me, other = sys.argv[1], sys.argv[2]
here = pathlib.Path(__file__).parent
(here / f"started-{me}").write_text(me)
deadline = time.monotonic() + 150
while not (here / f"started-{other}").exists():
    if time.monotonic() > deadline:
        sys.exit(f"job {me} never met job {other}")
    time.sleep(0.5)
print(f"job {me} met job {other}")
"""


def idle_debug_node() -> str:
    out = subprocess.run(["sinfo", "-h", "-p", "debug", "-t", "idle", "-N", "-o", "%N"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    return out[0] if out else node(1)


def sacct_nodes(slurm_job_id: int) -> str:
    return subprocess.run(["sacct", "-j", str(slurm_job_id), "-X", "-n", "-P", "-o", "NodeList"],
                          capture_output=True, text=True, timeout=30).stdout.strip()


def test_two_small_jobs_share_one_node_with_the_memory_default(session: UserSession) -> None:
    script = session.write("meet.py", MEET)
    shared = idle_debug_node()  # both on one node: it must hold them both at once
    common = ("-p", "debug", "--cpus-per-node", "1", f"--sbatch=--nodelist={shared}", "--time", "5")
    jobs = [session.run_job(*common, "--name", f"meet-{me}", str(script), "--", me, other)
            for me, other in (("a", "b"), ("b", "a"))]
    for job in jobs:
        info = session.wait(job, timeout=240)
        assert info["state"] == "COMPLETED", session.logs(job)
        assert f"met job {'b' if job == jobs[0] else 'a'}" in session.logs(job)
    assert {sacct_nodes(session.status(job)["slurm_job_id"]) for job in jobs} == {shared}
    batch = next((session.root / "jobs").glob(f"*-{jobs[0]}/batch.sh")).read_text()
    assert "#SBATCH --mem-per-cpu=1000M\n" in batch and "#SBATCH --partition=debug\n" in batch


def test_a_typed_gpu_request_runs_on_a_node_with_that_type(session: UserSession) -> None:
    """node3 is the local cluster's only node with v100 GPUs (node1-2 have a100)."""
    script = session.write("quick.py", "print('done')\n")
    job = session.run_job("-p", "debug", "--gpus-per-node", "v100:1", "--time", "5", str(script))
    info = session.wait(job, timeout=300)
    assert info["state"] == "COMPLETED", session.logs(job)
    assert sacct_nodes(info["slurm_job_id"]) == node(3)
