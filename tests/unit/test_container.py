"""The ``podman run`` command line one node of an attempt runs."""

from __future__ import annotations

import dataclasses
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcsched.launcher.container import (
    MAX_NOFILE,
    LaunchSpec,
    NodeContext,
    allocated_gpus,
    container_name,
    device_args,
    group_name,
    group_only_access,
    missing_directory,
    podman_run_argv,
    rendezvous_id,
    ulimit_args,
    visible_device_env,
)
from hpcsched.launcher.rendezvous import first_guess

SPEC = LaunchSpec(job_id=7, job_dir="/jobs/7", image="localhost/train:1", workdir="/home/a b/proj", procs_per_node=2,
                  gpus_per_node=2,
                  env=(("NCCL_DEBUG", "INFO"),), script="/home/a b/proj/train.py", script_args=("--epochs", "3", "a b"))
CTX = NodeContext(slurm_job_id=1234, node_rank=1, num_nodes=3, master_addr="10.0.0.1", node_name="node2",
                  restart_count=2, attempt=4, node_list="node[1-3]", gpus=("0", "1"), master_port=23456,
                  cpus_per_node=8)
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
SLURM_ENV = {"SLURM_JOB_ID": "1234", "SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "3",
             "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.1"}


@pytest.fixture(scope="module")
def argv() -> list[str]:
    return podman_run_argv(SPEC, CTX, LIMITS)


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


# --- podman run ---------------------------------------------------------------------------------


def test_container_shares_the_host_network_and_keeps_the_user_id(argv: list[str]) -> None:
    assert argv[:4] == ["podman", "run", "--rm", "--sig-proxy=false"]
    assert option_values(argv, "--network") == ["host"]
    assert option_values(argv, "--userns") == ["keep-id"]


def test_supplementary_groups_stay_with_the_container(argv: list[str]) -> None:
    assert option_values(argv, "--group-add") == ["keep-groups"]


def group_dir(owner: int, group: int, mode: int) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 2, owner, group, 4096, 0, 0, 0))


@pytest.mark.parametrize(("owner", "group", "mode", "needs_group"), [
    (0, 1002, 0o2770, True),  # root:projgroup 2770, the user in projgroup
    (0, 1002, 0o2775, False),  # others may enter and read too
    (1001, 1002, 0o2770, False),  # the user's own
    (0, 1001, 0o2770, False),  # the user's primary group: kept by every runtime
    (0, 1003, 0o2770, False),  # not the user's group at all: no group could help
])
def test_work_directory_reached_only_through_a_supplementary_group_is_explained(
        owner: int, group: int, mode: int, needs_group: bool) -> None:
    why = group_only_access("/proj/a", group_dir(owner, group, mode), uid=1001, groups=[1001, 1002], primary=1001)
    assert (why is not None) is needs_group
    if why:
        assert f"/proj/a (group {group_name(1002)}, mode {mode:04o})" in why and "crun" in why


def test_limits_are_passed_through(argv: list[str]) -> None:
    assert option_values(argv, "--ulimit") == ["nofile=1024:1024", "nproc=4096:4096"]


def test_workdir_is_bind_mounted_at_the_same_path_and_used_as_working_directory(argv: list[str]) -> None:
    assert option_values(argv, "--volume") == ["/home/a b/proj:/home/a b/proj", "/jobs/7:/jobs/7"]
    assert option_values(argv, "--workdir") == ["/home/a b/proj"]


def test_image_is_followed_by_torchrun_with_the_rendezvous_of_this_node(argv: list[str]) -> None:
    command = argv[argv.index("localhost/train:1") + 1:]
    # process 1 is hpcsched's signal forwarder, told where this attempt's checkpoint marker goes
    assert command[:5] == ["python3", "-m", "hpcsched.runtime.forward", "/jobs/7/attempts/4/checkpointed", "--"]
    command = command[5:]
    assert command[0] == "torchrun"
    assert {"--nnodes=3", "--node-rank=1", "--master-addr=10.0.0.1", "--master-port=23456",
            "--nproc-per-node=2", "--rdzv-id=hpcsched-1234-4"} <= set(command)


def test_C4_the_rendezvous_id_is_the_same_on_every_node_and_differs_per_job_and_attempt() -> None:
    ids = {rendezvous_id(dataclasses.replace(CTX, node_rank=rank)) for rank in range(3)}
    assert ids == {"hpcsched-1234-4"}
    assert rendezvous_id(dataclasses.replace(CTX, attempt=5)) not in ids
    assert rendezvous_id(dataclasses.replace(CTX, slurm_job_id=1235)) not in ids


def test_script_and_each_argument_are_separate_elements_at_the_end(argv: list[str]) -> None:
    assert argv[-4:] == ["/home/a b/proj/train.py", "--epochs", "3", "a b"]


def test_gpus_of_this_node_are_passed_as_devices(argv: list[str]) -> None:
    assert option_values(argv, "--device") == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]


def test_user_env_and_hpcsched_ids_reach_the_container(argv: list[str]) -> None:
    env = option_values(argv, "--env")
    assert {"NCCL_DEBUG=INFO", "HPCSCHED_JOB_ID=7", "HPCSCHED_ATTEMPT=4", "HPCSCHED_JOB_DIR=/jobs/7",
            "SLURM_JOB_ID=1234", "SLURM_NODEID=1"} <= set(env)


def test_omp_threads_default_to_the_cpus_shared_among_processes(argv: list[str]) -> None:
    assert "OMP_NUM_THREADS=4" in option_values(argv, "--env")


def test_user_omp_threads_are_not_overridden() -> None:
    spec = dataclasses.replace(SPEC, env=(("OMP_NUM_THREADS", "1"),))
    assert [e for e in option_values(podman_run_argv(spec, CTX, []), "--env") if e.startswith("OMP_")] == ["OMP_NUM_THREADS=1"]


def test_container_name_differs_per_attempt_and_node() -> None:
    assert container_name(CTX) == "hpcsched-1234-4-node2"


# --- master port --------------------------------------------------------------------------------


def test_C4_every_node_uses_the_port_the_driver_chose() -> None:
    ctx = NodeContext.from_env({**SLURM_ENV, "HPCSCHED_MASTER_PORT": "24001"})
    assert "--master-port=24001" in podman_run_argv(SPEC, ctx, [])


def test_launcher_started_without_a_chosen_port_uses_the_first_guess() -> None:
    assert NodeContext.from_env(SLURM_ENV).master_port == first_guess(1234) == 21234


# --- limits -------------------------------------------------------------------------------------


def _limit(args: list[str], name: str) -> tuple[int, int]:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    soft, hard = value.split(":")
    return int(soft), int(hard)


@given(st.integers(1, 1 << 40), st.integers(1, 1 << 40), st.integers(1, 1 << 22))
def test_ulimits_never_exceed_the_hard_limits_nor_pid_max(nofile_hard: int, nproc_hard: int, pid_max: int) -> None:
    args = ulimit_args(nofile_hard, nproc_hard, pid_max)
    assert args[0::2] == ["--ulimit", "--ulimit"]
    nofile, nproc = _limit(args, "nofile"), _limit(args, "nproc")
    assert nofile[0] == nofile[1] <= min(nofile_hard, MAX_NOFILE)
    assert nproc[0] == nproc[1] <= min(nproc_hard, pid_max)
    assert nofile[0] >= 1 and nproc[0] >= 1


def test_ulimits_use_the_hard_limits_when_they_are_low() -> None:
    assert ulimit_args(4096, 512, 32768) == ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=512:512"]


# --- GPUs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "gpus"),
    [
        ({"SLURM_STEP_GPUS": "2,3", "SLURM_JOB_GPUS": "0,1,2,3", "CUDA_VISIBLE_DEVICES": "0,1"}, ("2", "3")),
        ({"SLURM_JOB_GPUS": "0,1", "CUDA_VISIBLE_DEVICES": "0"}, ("0", "1")),
        ({"CUDA_VISIBLE_DEVICES": "1"}, ("1",)),
        ({"SLURM_STEP_GPUS": "", "SLURM_JOB_GPUS": "5"}, ("5",)),
        ({"SLURM_STEP_GPUS": "NoDevFiles", "CUDA_VISIBLE_DEVICES": "0"}, ("0",)),
        ({}, ()),
    ],
)
def test_allocated_gpus_come_from_the_most_specific_variable(env: dict[str, str], gpus: tuple[str, ...]) -> None:
    assert allocated_gpus(env) == gpus


def test_cdi_style_names_each_gpu() -> None:
    assert device_args(["0", "3"], "cdi") == ["--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=3"]


def test_dev_style_passes_device_files_and_the_control_devices() -> None:
    assert option_values(device_args(["1"], "dev"), "--device") == [
        "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"
    ]


@pytest.mark.parametrize("style", ["cdi", "dev"])
def test_no_gpus_means_no_devices(style: str) -> None:
    assert device_args([], style) == []


def test_the_container_sees_its_gpus_numbered_from_zero(argv: list[str]) -> None:
    env = option_values(podman_run_argv(SPEC, dataclasses.replace(CTX, gpus=("2", "3")), []), "--env")
    assert "CUDA_VISIBLE_DEVICES=0,1" in env
    assert "NVIDIA_VISIBLE_DEVICES=void" in env  # CDI mapped them; no legacy hook may add the image's "all"


def test_dev_style_names_the_allocated_gpus_for_a_legacy_hook() -> None:
    assert visible_device_env(["2", "3"], "dev") == [("CUDA_VISIBLE_DEVICES", "0,1"), ("NVIDIA_VISIBLE_DEVICES", "2,3")]


@pytest.mark.parametrize("style", ["cdi", "dev"])
def test_a_job_without_gpus_is_shown_none(style: str) -> None:
    env = option_values(podman_run_argv(SPEC, dataclasses.replace(CTX, gpus=()), []), "--env")
    assert "NVIDIA_VISIBLE_DEVICES=void" in env
    assert not [e for e in env if e.startswith("CUDA_VISIBLE_DEVICES=")]
    assert visible_device_env([], style) == [("NVIDIA_VISIBLE_DEVICES", "void")]


# --- node context -------------------------------------------------------------------------------


def test_node_context_reads_slurm_variables() -> None:
    ctx = NodeContext.from_env({**SLURM_ENV, "SLURM_STEP_NUM_NODES": "2", "SLURMD_NODENAME": "node2",
                                "SLURM_RESTART_COUNT": "1", "SLURM_STEP_GPUS": "0", "SLURM_CPUS_PER_TASK": "16"})
    assert ctx == NodeContext(slurm_job_id=1234, node_rank=1, num_nodes=2, master_addr="10.0.0.1", node_name="node2",
                              restart_count=1, attempt=2, node_list="", gpus=("0",), master_port=21234,
                              cpus_per_node=16)


def test_node_context_outside_slurm_raises_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="SLURM_JOB_ID is not set: the launcher must run inside a Slurm job step"):
        NodeContext.from_env({})


@pytest.mark.parametrize("missing", sorted(SLURM_ENV))
def test_node_context_names_the_missing_variable(missing: str) -> None:
    env = {k: v for k, v in SLURM_ENV.items() if k != missing}
    with pytest.raises(KeyError, match=missing):
        NodeContext.from_env(env)


@pytest.mark.parametrize(("present", "named"), [({"/home/a b/proj"}, "job directory /jobs/7"),
                                               ({"/jobs/7"}, "work directory /home/a b/proj"), (set(), "work directory")])
def test_a_directory_the_node_does_not_see_is_named_with_where_to_submit_from(present: set[str], named: str) -> None:
    problem = missing_directory(SPEC, "node2", present.__contains__)
    assert problem and f"the {named}" in problem and "does not exist on node2" in problem
    assert missing_directory(SPEC, "node2", {"/home/a b/proj", "/jobs/7"}.__contains__) is None
