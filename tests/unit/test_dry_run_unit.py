"""``run --dry-run`` shows each node's ``podman run`` and ``torchrun`` lines: the lines the
launcher builds on that node, from the launcher command line the daemon writes into the script."""

from __future__ import annotations

import shlex
from pathlib import Path

from fakeslurm import Core

from hpcsched.images.node import node_images
from hpcsched.launcher.container import NodeContext, parse_launch_args, podman_run_argv, ulimit_args
from hpcsched.launcher.rendezvous import PORT_ENV
from hpcsched.planning.dry_run import describe
from hpcsched.planning.nodes import LAUNCHER_PREFIX
from hpcsched.planning.request import JobRequest

OPTIONS = {"nodes": "2", "gpus_per_node": 2, "procs_per_node": 2, "cpus_per_node": 4, "env": ["SEED=3"],
           "script_args": ["--data dir", "it's"]}
# Node 2 of the job as Slurm starts it: what the launcher finds in its environment.
NODE_ENV = {
    "SLURM_JOB_ID": "4242", "SLURM_NODEID": "1", "SLURM_STEP_NUM_NODES": "2", "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.1",
    "SLURMD_NODENAME": "node2", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_STEP_GPUS": "1,3", "HPCSCHED_ATTEMPT": "1",
    PORT_ENV: "29600", "SLURM_CPUS_PER_TASK": "4", "HPCSCHED_GPU_DEVICE_STYLE": "dev",
    "HPCSCHED_NODE_STORAGE": "/local/{node}/containers",
}
LIMITS = (1024, 4096, 32768)
ON_NODE_2 = {"<slurm job id>": "4242", "<node 1>": "node2", "<address of node 0>": "10.0.0.1",
             "<node list>": "node[1-2]", "<rendezvous port>": "29600", "<gpu 0>": "1", "<gpu 1>": "3",
             "<open-files limit of the node>": "1024", "<process limit of the node>": "4096"}


def filled(argv: list[str], values: dict[str, str]) -> list[str]:
    for placeholder, value in values.items():
        argv = [arg.replace(placeholder, value) for arg in argv]
    return argv


def test_each_nodes_podman_run_line_is_what_the_launcher_runs_there(tmp_path: Path) -> None:
    core = Core(tmp_path)
    view = core.submitter.preview(JobRequest.from_options(core.request(**OPTIONS)), NODE_ENV).as_dict()
    job = core.store.get_job(core.accept(**OPTIONS))
    assert job is not None
    launcher = core.submitter.plan(job).launcher[LAUNCHER_PREFIX:]  # what srun runs on every node

    spec = parse_launch_args(launcher, NODE_ENV)  # as python -m hpcsched.launcher does on node2
    ctx = NodeContext.from_env(NODE_ENV)
    runs = podman_run_argv(spec, ctx, ulimit_args(*LIMITS), node_images(ctx.node_name, NODE_ENV).podman.argv())

    node_2 = view["node_commands"][1]
    values = {**ON_NODE_2, "<job id>": str(job.id), "<nonce>": job.nonce}
    assert filled(node_2["podman_run"], values) == runs
    assert runs[runs.index(spec.image) + 1:] == filled(node_2["torchrun"], values)
    assert "--device" in runs and "/dev/nvidia3" in runs  # the options above reached the line


def test_the_printed_lines_are_shell_quoted_and_split_back_to_the_commands(tmp_path: Path) -> None:
    core = Core(tmp_path)
    view = core.submitter.preview(JobRequest.from_options(core.request(**OPTIONS)), {}).as_dict()
    lines = describe(view).splitlines()
    for node in view["node_commands"]:
        rank = node["node_rank"]
        podman = lines[lines.index(f"# node {rank}: podman run (started by the launcher)") + 1]
        torchrun = lines[lines.index(f"# node {rank}: torchrun (inside the container)") + 1]
        assert shlex.split(podman) == node["podman_run"] and shlex.split(torchrun) == node["torchrun"]
    assert f"# job directory: {view['job_dir']}" == lines[0]
    assert view["job_dir"] == f"{core.settings.jobs_dir}/{core.store.store_id}-<job id>"


def test_a_large_or_elastic_job_shows_its_first_and_last_node_and_says_why(tmp_path: Path) -> None:
    core = Core(tmp_path)
    view = core.submitter.preview(JobRequest.from_options(core.request(nodes="2-16")), {}).as_dict()
    assert [n["node_rank"] for n in view["node_commands"]] == [0, 15]
    assert "--node-rank=15" in view["node_commands"][1]["torchrun"]
    assert "--nnodes=16" in view["node_commands"][1]["torchrun"]
    text = describe(view)
    assert "# elastic (2-16 nodes): shown for 16; --nnodes is the allocation's count" in text
    assert "# nodes 1 to 14 differ from these only in --node-rank and the node's name" in text
