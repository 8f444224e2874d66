"""Pure construction of the ``podman run`` command line for one node of one attempt."""

from __future__ import annotations

import argparse
import grp
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hpcsched.launcher.rendezvous import PORT_ENV, first_guess

MAX_NOFILE = 1 << 20
JOB_LABEL = "org.hpcsched.job"  # on every container of a job: its hpcsched job id


@dataclass(frozen=True)
class NodeContext:
    """What Slurm tells the launcher about this node of the allocation. A dry run fills the values
    that exist only once Slurm has started the job with placeholders (``<slurm job id>``)."""

    slurm_job_id: int | str
    node_rank: int
    num_nodes: int
    master_addr: str
    node_name: str
    restart_count: int
    attempt: int
    node_list: str
    gpus: tuple[str, ...]
    master_port: int | str
    cpus_per_node: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NodeContext:
        def need(key: str) -> str:
            value = env.get(key)
            if not value:
                raise KeyError(f"{key} is not set: the launcher must run inside a Slurm job step")
            return value

        return cls(
            slurm_job_id=int(need("SLURM_JOB_ID")),
            node_rank=int(need("SLURM_NODEID")),
            num_nodes=int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES") or need("SLURM_JOB_NUM_NODES")),
            master_addr=need("SLURM_LAUNCH_NODE_IPADDR"),
            node_name=env.get("SLURMD_NODENAME", "node"),
            restart_count=int(env.get("SLURM_RESTART_COUNT") or 0),
            attempt=int(env.get("HPCSCHED_ATTEMPT") or int(env.get("SLURM_RESTART_COUNT") or 0) + 1),
            node_list=env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", ""),
            gpus=allocated_gpus(env),
            # the batch driver chose it free on the first node; a launcher run by hand guesses
            master_port=int(env.get(PORT_ENV) or first_guess(int(need("SLURM_JOB_ID")))),
            cpus_per_node=int(env.get("SLURM_CPUS_PER_TASK") or env.get("SLURM_CPUS_ON_NODE") or 1),
        )


@dataclass(frozen=True)
class LaunchSpec:
    """What the batch script passes to the launcher (the same for every node)."""

    job_id: int | str  # a placeholder in a dry run
    job_dir: str
    image: str
    workdir: str
    procs_per_node: int
    gpus_per_node: int
    env: tuple[tuple[str, str], ...]
    script: str
    script_args: tuple[str, ...]
    gpu_device_style: str = "cdi"
    store_id: str = ""  # with nonce: the job's identity, which its checkpoints carry ("" for older jobs)
    nonce: str = ""


def parse_launch_args(argv: Sequence[str], env: Mapping[str, str]) -> LaunchSpec:
    """The launcher's command line (``plan.launcher_argv`` writes it into the batch script) and
    the site's GPU device style from the job's environment. A dry run parses the planned line
    with this same function, so what it shows is what the launcher will run."""
    p = argparse.ArgumentParser(prog="hpcsched-launcher")
    p.add_argument("--job-id", required=True)
    p.add_argument("--job-dir", required=True)
    p.add_argument("--store-id", default="")
    p.add_argument("--job-nonce", default="")
    p.add_argument("--image", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--procs-per-node", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=0)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("script")
    p.add_argument("script_args", nargs=argparse.REMAINDER)
    a = p.parse_args(list(argv))
    return LaunchSpec(
        job_id=a.job_id, job_dir=a.job_dir, store_id=a.store_id, nonce=a.job_nonce, image=a.image, workdir=a.workdir,
        procs_per_node=a.procs_per_node,
        gpus_per_node=a.gpus_per_node,
        env=tuple(tuple(e.split("=", 1)) for e in a.env),
        script=a.script, script_args=tuple(a.script_args),
        gpu_device_style=env.get("HPCSCHED_GPU_DEVICE_STYLE", "cdi"),
    )


def is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def group_only_access(path: str, st: os.stat_result, uid: int, groups: Sequence[int], primary: int) -> str | None:
    """Why a runtime that drops supplementary groups (runc) cannot enter ``path``, or None: the
    user reaches it only through a supplementary group."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == uid or mode & 0o005 == 0o005 or st.st_gid == primary or st.st_gid not in groups:
        return None
    group = group_name(st.st_gid)
    return (f"the work directory {path} (group {group}, mode {mode:04o}) is reachable only through your "
            f"supplementary group {group}, which this node's container runtime drops: the site must run "
            "Podman with crun (runtime = \"crun\" in containers.conf), or run the job from a directory of "
            "your own (see the hpcsched docs, real-cluster.md)")


def container_name(ctx: NodeContext) -> str:
    return f"hpcsched-{ctx.slurm_job_id}-{ctx.attempt}-{ctx.node_name}"


def allocated_gpus(env: Mapping[str, str]) -> tuple[str, ...]:
    """GPU indices Slurm gave this step on this node (empty when none were requested)."""
    for key in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = env.get(key, "").strip()
        if value and value not in ("NoDevFiles",):
            return tuple(v.strip() for v in value.split(",") if v.strip().isdigit())
    return ()


def ulimit_args(nofile_hard: int, nproc_hard: int, pid_max: int) -> list[str]:
    """Rootless runc cannot raise limits: set them explicitly, at or below what we hold.
    Inside Podman's user namespace the process limit is capped at kernel.pid_max."""
    return ulimit_flags(min(nofile_hard, MAX_NOFILE), min(nproc_hard, pid_max))


def ulimit_flags(nofile: int | str, nproc: int | str) -> list[str]:
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def device_args(gpus: Sequence[str], style: str) -> list[str]:
    args: list[str] = []
    if not gpus:
        return args
    if style not in ("cdi", "dev"):
        raise ValueError(f"HPCSCHED_GPU_DEVICE_STYLE must be 'cdi' or 'dev', not {style!r}")
    if style == "cdi":
        for g in gpus:
            args += ["--device", f"nvidia.com/gpu={g}"]
    else:
        for g in gpus:
            args += ["--device", f"/dev/nvidia{g}"]
        for dev in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"):
            args += ["--device", dev]
    return args


def visible_device_env(gpus: Sequence[str], style: str) -> list[tuple[str, str]]:
    """The container sees only its GPUs, numbered from 0 (CUDA_VISIBLE_DEVICES). With CDI the
    devices are already mapped: NVIDIA_VISIBLE_DEVICES=void keeps a legacy NVIDIA hook from adding
    the image's "all" (and so every GPU of the node, to a CPU-only job too); with /dev/nvidiaN
    device nodes it names the allocated ones, so such a hook adds exactly those and the driver."""
    cuda = [("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(len(gpus))))] if gpus else []
    nvidia = ",".join(gpus) if gpus and style == "dev" else "void"
    return [*cuda, ("NVIDIA_VISIBLE_DEVICES", nvidia)]


def missing_directory(spec: LaunchSpec, node: str, is_dir: Callable[[str], bool]) -> str | None:
    """The work or job directory the container mounts is not there on this node: it lies on a
    disk only the login node has (its /tmp, a local scratch), or a mount the node lacks."""
    if not is_dir(spec.workdir):
        return (f"the work directory {spec.workdir} does not exist on {node}: the job was submitted from a "
                "directory the compute nodes do not see (a login node's /tmp or local disk?); submit from a "
                "directory on a file system every node mounts (your home, project or scratch directory)")
    if not is_dir(spec.job_dir):
        return (f"the job directory {spec.job_dir} does not exist on {node}: jobs_dir must be on a file system "
                "every node mounts (`hpcsched doctor` checks it; docs/configuration.md)")
    return None


def checkpointed_marker(spec: LaunchSpec, ctx: NodeContext) -> str:
    return f"{spec.job_dir}/attempts/{ctx.attempt}/checkpointed"


def torchrun_argv(spec: LaunchSpec, ctx: NodeContext) -> list[str]:
    """torchrun under hpcsched's process 1, which carries stop signals past torchrun."""
    return [
        "python3", "-m", "hpcsched.runtime.forward", checkpointed_marker(spec, ctx), "--",
        "torchrun",
        f"--nnodes={ctx.num_nodes}",
        f"--nproc-per-node={spec.procs_per_node}",
        f"--node-rank={ctx.node_rank}",
        f"--master-addr={ctx.master_addr}",
        f"--master-port={ctx.master_port}",
        f"--rdzv-id={rendezvous_id(ctx)}",
        "--max-restarts=0",
        spec.script,
        *spec.script_args,
    ]


def rendezvous_id(ctx: NodeContext) -> str:
    """The same on every node of an attempt and different for every other attempt and job.
    torchrun prefixes its rendezvous keys with it: another job's node that reaches this job's
    port (its own was taken, C4) waits for ranks under its own id and never starts workers in
    this job (with torchrun's default id, "none", it took this job's ranks 1 and 2, and their
    workers broke this job's all-reduce)."""
    return f"hpcsched-{ctx.slurm_job_id}-{ctx.attempt}"


def threads_per_process(cpus_per_node: int, procs_per_node: int) -> int:
    """OpenMP threads per training process: the node's CPUs shared among its processes."""
    return max(1, cpus_per_node // max(1, procs_per_node))


def podman_run_argv(spec: LaunchSpec, ctx: NodeContext, limits: list[str],
                    podman: Sequence[str] = ("podman",)) -> list[str]:
    """``podman`` is the command with the node's global storage options (images.node)."""
    user_keys = {key for key, _ in spec.env}
    defaults = [] if "OMP_NUM_THREADS" in user_keys else [
        ("OMP_NUM_THREADS", str(threads_per_process(ctx.cpus_per_node, spec.procs_per_node)))]
    env = [
        ("HPCSCHED_JOB_ID", str(spec.job_id)),
        ("HPCSCHED_ATTEMPT", str(ctx.attempt)),
        ("HPCSCHED_JOB_DIR", spec.job_dir),
        *([("HPCSCHED_STORE_ID", spec.store_id), ("HPCSCHED_JOB_NONCE", spec.nonce)] if spec.nonce else []),
        ("SLURM_JOB_ID", str(ctx.slurm_job_id)),
        ("SLURM_NODEID", str(ctx.node_rank)),
        ("SLURMD_NODENAME", ctx.node_name),
        ("SLURM_JOB_NODELIST", ctx.node_list),
        ("HOME", "/tmp"),
        # a rank stopped at a checkpoint exits 0 (torchrun prints no ChildFailedError for it); the
        # checkpointed marker says what happened, and hpcsched.runtime.forward exits 75 on it
        ("HPCSCHED_CHECKPOINTED_EXIT", "0"),
        *visible_device_env(ctx.gpus, spec.gpu_device_style),
        *defaults,
        *spec.env,
    ]
    argv = [
        # --sig-proxy=false: Slurm signals every process of the step, podman run included; the
        # launcher alone passes signals into the container, so each arrives once.
        *podman, "run", "--rm", "--sig-proxy=false", "--name", container_name(ctx),
        # keep-groups: the user's supplementary groups stay with the container's processes, so a
        # group-shared project directory works as the work directory (crun; runc drops them)
        "--network", "host", "--userns", "keep-id", "--group-add", "keep-groups",
        "--label", f"{JOB_LABEL}={spec.job_id}",
        "--label", f"org.hpcsched.slurm_job={ctx.slurm_job_id}",
        *limits,
        *device_args(ctx.gpus, spec.gpu_device_style),
        "--volume", f"{spec.workdir}:{spec.workdir}",
        *([] if is_within(spec.job_dir, spec.workdir) else ["--volume", f"{spec.job_dir}:{spec.job_dir}"]),
        "--workdir", spec.workdir,
    ]
    for key, value in env:
        argv += ["--env", f"{key}={value}"]
    return argv + [spec.image, *torchrun_argv(spec, ctx)]
