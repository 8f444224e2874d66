"""``hpcsched image check``: is the image on every node of a partition? One job step with one
task on each responding node runs the probe (:mod:`hpcsched.images.node`); the verdicts are pure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from hpcsched.config import Settings
from hpcsched.slurm.runner import Runner, SlurmCommandError

# sinfo's short states of nodes that cannot run a step now (a trailing * or ~ is stripped first)
UNAVAILABLE = ("down", "drain", "drng", "fail", "maint", "unk", "npc", "pow", "plnd", "inval", "futr", "resv")
PODMAN_FIX = "run `srun -w NODE podman info` and fix what it says (docs/real-cluster.md)"
STEP_EXTRA_S = 300.0  # beyond the wait for the nodes: the probe starts Podman once per node


@dataclass(frozen=True)
class NodeVerdict:
    node: str
    status: str  # "ok", "loadable", "missing", "skip"
    found: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "status": self.status, "found": self.found, "fix": self.fix}


def partition_nodes(sinfo: str, partition: str) -> tuple[list[str], list[NodeVerdict]]:
    """From ``sinfo -h -N -o "%N %t %P"``: the nodes of ``partition`` (empty: Slurm's default, the
    one marked ``*``) a step can reach, and the others as skipped."""
    up: list[str] = []
    skipped: list[NodeVerdict] = []
    for line in sinfo.splitlines():
        parts = line.split()
        if len(parts) != 3 or not (parts[2].rstrip("*") == partition if partition else parts[2].endswith("*")):
            continue
        state = parts[1].rstrip("*~#!%$@^-")
        if state.startswith(UNAVAILABLE) or parts[1].endswith("*"):
            skipped.append(NodeVerdict(parts[0], "skip", f"not checked: the node is {parts[1]}"))
        else:
            up.append(parts[0])
    return up, skipped


def step_argv(cfg: Settings, nodes: Sequence[str], image: str, wait_s: float) -> list[str]:
    n = len(nodes)
    argv = ["srun", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=256M",
            "--time=5", "--job-name=hpcsched-image-check", f"--immediate={max(1, int(wait_s))}",
            f"--nodelist={','.join(nodes)}"]
    argv += [f"--{name}={value}" for name, value in
             (("partition", cfg.partition), ("account", cfg.account), ("qos", cfg.qos)) if value]
    return [*argv, cfg.launcher_python, "-m", "hpcsched.images.node", image]


def parse_probes(stdout: str) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                probe = json.loads(line)
            except ValueError:
                continue
            found[str(probe.get("node"))] = probe
    return found


def fix_for(image: str) -> str:
    return (f"push it from the login node (`hpcsched image push {image}`, with HPCSCHED_IMAGE_DIR set where the "
            "jobs see it too), or build it on the node; docs/real-cluster.md")


def verdict(node: str, image: str, probe: dict[str, object] | None) -> NodeVerdict:
    if probe is None:
        return NodeVerdict(node, "missing", f"no answer from {node}: the probe did not run there", PODMAN_FIX)
    if probe.get("error"):
        return NodeVerdict(node, "missing", f"Podman on {node} cannot look for {image}: {probe['error']}",
                           PODMAN_FIX)
    have, pushed = probe.get("id"), probe.get("archive_id")
    if isinstance(have, str) and (pushed is None or pushed == have):
        return NodeVerdict(node, "ok", f"{image} ({have[:12]}) is in Podman's storage on {node}")
    if isinstance(pushed, str):
        older = f"an older {image} ({have[:12]})" if isinstance(have, str) else f"no {image}"
        return NodeVerdict(node, "loadable", f"{node} has {older}; the launcher loads the pushed archive "
                                             f"({pushed[:12]}) there on first use")
    return NodeVerdict(node, "missing", f"{image} is not in Podman's storage on {node} and no archive of it is "
                                        "pushed", fix_for(image))


def check(cfg: Settings, image: str, slurm: Runner, wait_s: float) -> list[NodeVerdict]:
    """Run the probe on every available node of the configured partition and judge each."""
    nodes, skipped = partition_nodes(slurm(["sinfo", "-h", "-N", "-o", "%N %t %P"]).stdout, cfg.partition)
    if not nodes:
        return skipped
    try:
        out = slurm(step_argv(cfg, nodes, image, wait_s), timeout=wait_s + STEP_EXTRA_S).stdout
    except SlurmCommandError as e:
        if not e.stdout.strip():
            raise
        out = e.stdout
    probes = parse_probes(out)
    return [verdict(node, image, probes.get(node)) for node in nodes] + skipped


def exit_status(verdicts: Sequence[NodeVerdict]) -> int:
    return 1 if any(v.status == "missing" for v in verdicts) else 0
