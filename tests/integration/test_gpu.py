"""GPU jobs on the local cluster's emulated GPUs (cluster/gres.conf, cluster/cdi): Slurm allocates
GPU indices, the launcher maps exactly those into the container through CDI, numbered from 0.

node1 and node2 have two a100 each, node3 two v100. The device nodes are stand-ins; what is tested
is the plumbing a site with real GPUs runs. Each rank prints what it sees, then waits until the
test has read the allocation from Slurm (``scontrol show job -d``, which forgets the GPU indices
once a job ends) and leaves a file named ``go``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any

import pytest

from tests.integration.conftest import NODE_PREFIX, UserSession, node

SEES = """\
import glob, json, os, sys, time
print("GPUSEEN " + json.dumps({
    "tag": sys.argv[1], "rank": int(os.environ["RANK"]), "world": int(os.environ["WORLD_SIZE"]),
    "local_world": int(os.environ["LOCAL_WORLD_SIZE"]), "node": os.environ["SLURMD_NODENAME"],
    "devices": sorted(glob.glob("/dev/nvidia[0-9]*")),
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "nvidia": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
}), flush=True)
open(f"seen-{sys.argv[1]}-{os.environ['RANK']}", "w").close()
deadline = time.time() + 150
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.5)
"""
SMALL = ("--mem", "400M")  # jobs share a node only when none takes all of its memory


def seen(session: UserSession, job: int) -> list[dict[str, Any]]:
    """Every rank's GPUSEEN record in the job's log. Two ranks of a node write to one stream, and
    once (CI, 2026-12-06) their two records came out on one line: each is read where it starts."""
    log, decoder, out = session.logs(job), json.JSONDecoder(), []
    for match in re.finditer(r"GPUSEEN ", log):
        out.append(decoder.raw_decode(log, match.end())[0])
    return out


def wait_ranks(session: UserSession, tag: str, ranks: int, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while len(list(session.workdir.glob(f"seen-{tag}-*"))) < ranks and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(list(session.workdir.glob(f"seen-{tag}-*"))) == ranks, f"ranks of {tag} did not start"


def allocated(slurm_job_id: int) -> dict[str, set[int]]:
    """GPU indices per node of a running job, as Slurm's controller records them."""
    out = subprocess.run(["scontrol", "show", "job", "-d", str(slurm_job_id)], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    gpus: dict[str, set[int]] = {}
    for nodes, idx in re.findall(r"Nodes=(\S+) CPU_IDs=\S+ Mem=\S+ GRES=\S*\(IDX:([0-9,-]+)\)", out):
        expanded = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                  timeout=30, check=True).stdout.split()
        indices = {i for part in idx.split(",") for i in _span(part)}
        gpus.update({node: indices for node in expanded})
    return gpus


def _span(part: str) -> range:
    low, _, high = part.partition("-")
    return range(int(low), int(high or low) + 1)


def start(session: UserSession, tag: str, *args: str) -> tuple[int, int]:
    job = session.run_job("sees.py", "--name", tag, *SMALL, *args, "--", tag)
    info = session.wait(job, {"RUNNING", "COMPLETED", "FAILED", "CANCELLED"}, timeout=600)  # others' jobs may hold the nodes
    assert info["state"] == "RUNNING", session.logs(job)
    return job, int(info["slurm_job_id"])


def finish(session: UserSession, *jobs: int) -> None:
    session.write("go", "")
    for job in jobs:
        assert session.wait(job)["state"] == "COMPLETED", session.logs(job)


def devices(indices: set[int]) -> list[str]:
    return sorted(f"/dev/nvidia{i}" for i in indices)


def test_two_gpus_per_node_each_rank_sees_exactly_its_nodes_gpus_numbered_from_zero(session: UserSession) -> None:
    session.write("sees.py", SEES)
    job, slurm_id = start(session, "pair", "--gpus-per-node", "2")
    wait_ranks(session, "pair", 2)
    gpus = allocated(slurm_id)
    finish(session, job)
    ranks = seen(session, job)
    assert sorted(r["rank"] for r in ranks) == [0, 1]  # one training process per GPU by default
    assert {(r["world"], r["local_world"]) for r in ranks} == {(2, 2)}
    assert set(gpus) == {r["node"] for r in ranks} and len(gpus) == 1
    for r in ranks:
        assert r["devices"] == devices(gpus[r["node"]]) == ["/dev/nvidia0", "/dev/nvidia1"], r
        assert (r["cuda"], r["nvidia"]) == ("0,1", "void"), r


def test_two_one_gpu_jobs_on_one_node_get_disjoint_gpus(session: UserSession) -> None:
    session.write("sees.py", SEES)
    pinned = ("--gpus-per-node", "1", f"--sbatch=--nodelist={node(3)}")
    first, first_slurm = start(session, "one", *pinned)
    second, second_slurm = start(session, "two", *pinned)
    wait_ranks(session, "one", 1)
    wait_ranks(session, "two", 1)
    gpus = {"one": allocated(first_slurm)[node(3)], "two": allocated(second_slurm)[node(3)]}
    finish(session, first, second)
    assert gpus["one"] | gpus["two"] == {0, 1} and not gpus["one"] & gpus["two"]
    for tag, job in (("one", first), ("two", second)):
        [rank] = seen(session, job)
        assert rank["devices"] == devices(gpus[tag]), (tag, rank)  # its own GPU, not the other job's
        assert (rank["cuda"], rank["nvidia"], rank["node"]) == ("0", "void", node(3))


def test_a_typed_request_lands_on_a_node_of_that_type(session: UserSession) -> None:
    session.write("sees.py", SEES)
    job, slurm_id = start(session, "typed", "--sbatch=--gres=gpu:v100:1")
    wait_ranks(session, "typed", 1)
    gpus = allocated(slurm_id)
    finish(session, job)
    [rank] = seen(session, job)
    assert set(gpus) == {node(3)} and len(gpus[node(3)]) == 1  # the only v100 node
    assert rank["devices"] == devices(gpus[node(3)]) and rank["cuda"] == "0"


def test_a_job_that_asks_no_gpu_sees_none(session: UserSession) -> None:
    session.write("sees.py", SEES)
    session.write("go", "")
    job = session.run_job("sees.py", *SMALL, "--", "cpu")
    assert session.wait(job)["state"] == "COMPLETED", session.logs(job)
    [rank] = seen(session, job)
    assert (rank["devices"], rank["cuda"], rank["nvidia"]) == ([], None, "void")


def test_more_gpus_per_node_than_the_partition_has_is_refused_before_submission(session: UserSession) -> None:
    session.write("sees.py", SEES)
    out = session.hs("run", "sees.py", "--gpus-per-node", "3", check=False)
    assert out.returncode == 2, out.stdout
    assert "partition debug has at most 2 GPUs per node; --gpus-per-node 3 can never start" in out.stderr
    assert not list((session.root / "jobs").iterdir())


def test_a_typed_request_no_node_can_meet_ends_with_slurms_reason(session: UserSession) -> None:
    session.write("sees.py", SEES)
    job = session.run_job("sees.py", "--sbatch=--gres=gpu:v100:3", "--", "big")
    info = session.wait(job)
    assert (info["state"], info["reason"]) == ("FAILED", "BadConstraints"), info
    assert "BadConstraints: its constraints cannot be met" in session.hs("status", str(job)).stdout
    assert not seen(session, job)


@pytest.mark.parametrize("spec", ["", "kind: nvidia.com/gpu\ndevices:\n  - name: \"7\"\n"], ids=["missing", "other-gpu"])
def test_cdi_specification_without_the_allocated_gpu_is_named_with_the_remedy(session: UserSession, spec: str) -> None:
    cdi = session.root / "cdi"
    cdi.mkdir()
    if spec:
        (cdi / "nvidia.yaml").write_text(spec)
    session.write("sees.py", SEES)
    session.write("go", "")
    env = {"HPCSCHED_CDI_SPEC_DIRS": str(cdi)}  # the daemon passes it on to the job's launcher
    session.hs("daemon", "start", env=env)
    job = int(json.loads(session.hs("run", "--json", "sees.py", "--gpus-per-node", "1", *SMALL, "--", "cdi",
                                    env=env).stdout)["id"])
    info = session.wait(job)
    logs = session.logs(job)
    assert info["state"] == "FAILED", logs
    node_re = rf"{NODE_PREFIX}\d"
    assert re.search(rf"hpcsched launcher on {node_re}: no CDI specification on {node_re} names nvidia\.com/gpu=[01]", logs)
    assert "nvidia-ctk cdi generate" in logs and not seen(session, job)


def test_dev_style_maps_the_allocated_device_nodes_without_cdi(session: UserSession) -> None:
    session.write("sees.py", SEES)
    env = {"HPCSCHED_GPU_DEVICE_STYLE": "dev", "HPCSCHED_CDI_SPEC_DIRS": str(session.root)}  # no CDI spec there
    session.hs("daemon", "start", env=env)
    job = int(json.loads(session.hs("run", "--json", "sees.py", "--name", "dev", "--gpus-per-node", "1",
                                    f"--sbatch=--nodelist={node(2)}", *SMALL, "--", "dev", env=env).stdout)["id"])
    info = session.wait(job, {"RUNNING", "COMPLETED", "FAILED", "CANCELLED"}, timeout=600)
    assert info["state"] == "RUNNING", session.logs(job)
    wait_ranks(session, "dev", 1)
    gpus = allocated(int(info["slurm_job_id"]))
    finish(session, job)
    [rank] = seen(session, job)
    [index] = gpus[node(2)]
    assert rank["devices"] == [f"/dev/nvidia{index}"] and (rank["cuda"], rank["nvidia"]) == ("0", str(index))


def test_doctor_names_a_node_whose_cdi_specification_lacks_the_allocated_gpu(session: UserSession) -> None:
    empty = session.root / "cdi"
    empty.mkdir()
    proc = session.hs("doctor", "--json", "--wait", "300", check=False, timeout=600,
                      env={"HPCSCHED_CDI_SPEC_DIRS": str(empty)})
    gpus = {f["name"]: f for f in json.loads(proc.stdout)}["gpus"]
    assert proc.returncode == 1 and gpus["status"] == "fail", gpus
    assert re.fullmatch(rf"no CDI specification on {NODE_PREFIX}\d names nvidia\.com/gpu=[01], which Slurm allocated to this job "
                        rf"\(looked in {empty}: none names any nvidia\.com/gpu device\)", gpus["found"]), gpus
    assert gpus["fix"].startswith("the node's administrator must generate it with `nvidia-ctk cdi generate")
