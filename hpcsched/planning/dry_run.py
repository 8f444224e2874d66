"""``hpcsched run --dry-run``: the plan the daemon would apply, and what every node would run.

The daemon builds it (``Submitter.preview``) with its own settings, store id and environment,
through the same ``plan_submission`` it submits with; the CLI only prints it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcsched.planning.nodes import NodeCommand, node_commands, shown_ranks
from hpcsched.planning.plan import SubmissionPlan
from hpcsched.planning.request import JobRequest


@dataclass(frozen=True)
class DryRun:
    plan: SubmissionPlan
    nodes: int  # the node count the node commands are shown for
    node_range: str  # the request's count, "2" or "1-4"
    commands: tuple[NodeCommand, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_dir": self.plan.job_dir, "script_path": self.plan.script_path, "sbatch": list(self.plan.argv),
            "batch_script": self.plan.script_text, "launcher": list(self.plan.launcher),
            "nodes": self.nodes, "node_range": self.node_range,
            "node_commands": [c.as_dict() for c in self.commands],
        }


def preview(plan: SubmissionPlan, request: JobRequest, env: Mapping[str, str]) -> DryRun:
    nodes = request.start_nodes or request.nodes.max
    return DryRun(plan, nodes, str(request.nodes), tuple(node_commands(plan.launcher, nodes, request.cpus_per_node, env)))


def describe(view: Mapping[str, Any]) -> str:
    """What ``--dry-run`` prints, from the daemon's answer (``DryRun.as_dict``)."""
    lines = [
        f"# job directory: {view['job_dir']}",
        "# sbatch command:", shlex.join(view["sbatch"]),
        f"# batch script ({view['script_path']}):", view["batch_script"].rstrip("\n"),
        *node_notes(view["nodes"], view["node_range"]),
    ]
    for node in view["node_commands"]:
        lines += [f"# node {node['node_rank']}: podman run (started by the launcher)", shlex.join(node["podman_run"]),
                  f"# node {node['node_rank']}: torchrun (inside the container)", shlex.join(node["torchrun"])]
    return "\n".join(lines) + "\n"


def node_notes(nodes: int, node_range: str) -> list[str]:
    notes = [f"# on each of {nodes} node{'s' if nodes != 1 else ''}, srun runs the launcher above; "
             "<...> is known once Slurm starts the job"]
    if node_range != str(nodes):
        notes.append(f"# elastic ({node_range} nodes): shown for {nodes}; --nnodes is the allocation's count")
    if len(shown_ranks(nodes)) < nodes:
        notes.append(f"# nodes 1 to {nodes - 2} differ from these only in --node-rank and the node's name")
    return notes
