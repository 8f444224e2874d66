"""What each node of a planned job runs: the ``podman run`` and ``torchrun`` command lines.

They are built by the launcher's own functions (``parse_launch_args``, ``podman_run_argv``) from
the launcher command line the plan writes into the batch script, so a dry run shows what the
launcher will execute. Values that exist only once Slurm has started the job (its id, the node
names, the GPU indices Slurm allocates, the rendezvous port, the node's resource limits) are
placeholders in ``<...>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hpcsched.images.node import node_images
from hpcsched.launcher.container import NodeContext, parse_launch_args, podman_run_argv, torchrun_argv, ulimit_flags

# python -m hpcsched.launcher: what precedes the launcher's own arguments in launcher_argv
LAUNCHER_PREFIX = 3
SHOWN_NODES = 4  # a larger job shows its first and last nodes: the others differ only in rank and name
PLANNED_LIMITS = ulimit_flags("<open-files limit of the node>", "<process limit of the node>")


@dataclass(frozen=True)
class NodeCommand:
    rank: int
    podman_run: tuple[str, ...]
    torchrun: tuple[str, ...]  # the tail of podman_run: what runs inside the container

    def as_dict(self) -> dict[str, object]:
        return {"node_rank": self.rank, "podman_run": list(self.podman_run), "torchrun": list(self.torchrun)}


def planned_node(rank: int, nodes: int, gpus: int, cpus: int) -> NodeContext:
    """Node ``rank`` of a first attempt on ``nodes`` nodes, as far as it is known before Slurm starts it."""
    return NodeContext(
        slurm_job_id="<slurm job id>", node_rank=rank, num_nodes=nodes, master_addr="<address of node 0>",
        node_name=f"<node {rank}>", restart_count=0, attempt=1, node_list="<node list>",
        gpus=tuple(f"<gpu {i}>" for i in range(gpus)), master_port="<rendezvous port>", cpus_per_node=cpus,
    )


def shown_ranks(nodes: int) -> list[int]:
    return list(range(nodes)) if nodes <= SHOWN_NODES else [0, nodes - 1]


def node_commands(launcher: Sequence[str], nodes: int, cpus_per_node: int, env: Mapping[str, str]) -> list[NodeCommand]:
    """The commands of the nodes a dry run shows. ``env`` is the environment the job will get
    (the daemon's: the GPU device style and node storage settings reach the job from it)."""
    spec = parse_launch_args(launcher[LAUNCHER_PREFIX:], env)
    commands = []
    for rank in shown_ranks(nodes):
        ctx = planned_node(rank, nodes, spec.gpus_per_node, cpus_per_node)
        podman = node_images(ctx.node_name, env).podman.argv()
        commands.append(NodeCommand(rank, tuple(podman_run_argv(spec, ctx, PLANNED_LIMITS, podman)),
                                    tuple(torchrun_argv(spec, ctx))))
    return commands
