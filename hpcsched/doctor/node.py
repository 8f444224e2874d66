"""Verdicts on one compute node, from the output of a single ``srun`` step running
:data:`NODE_SCRIPT`: rootless Podman (runtime, id mappings), its storage on node-local disk, the
image in its storage, and the jobs directory seen from there. Pure: parse and judge captured text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcsched.doctor.findings import Finding, fail, ok, warn
from hpcsched.images.podman import STALE_STATE_HINT
from hpcsched.launcher.storage import StoragePaths, parse_mounts, storage_problem

NODE_CHECKS = ("podman", "storage", "image", "jobs_dir")
# Runs on the node under /bin/sh with the image as $1, the jobs directory as $2, the pushed
# archive's manifest as $3 and the shared image store as $4 ("" when no image_dir is set), never
# pasted into the script. Podman gets the storage options the launcher gives it there: the node's
# own root when HPCSCHED_NODE_STORAGE names one ({node} replaced), with the shared store. Each
# section ends with its exit status.
NODE_SCRIPT = """\
node="${SLURMD_NODENAME:-$(hostname)}"
echo "@@node $node"
root="" store=""
if [ -n "${HPCSCHED_NODE_STORAGE:-}" ]; then
  root=$(printf '%s\\n' "$HPCSCHED_NODE_STORAGE" | awk -v n="$node" '{gsub(/[{]node[}]/, n); print}')
  [ -n "$4" ] && [ -d "$4" ] && store="overlay.imagestore=$4"
fi
pm() {
  if [ -z "$root" ]; then podman "$@"
  elif [ -n "$store" ]; then podman --root "$root/graph" --runroot "$root/run" --storage-opt "$store" "$@"
  else podman --root "$root/graph" --runroot "$root/run" "$@"; fi
}
echo "@@section podman"; pm info --format json 2>&1; echo "@@rc $?"
echo "@@section mounts"; cat /proc/self/mounts; echo "@@rc $?"
echo "@@section image"; pm image exists "$1" 2>&1; echo "@@rc $?"
echo "@@section archive"; test -n "$3" && test -r "$3"; echo "@@rc $?"
echo "@@section jobs_dir"; test -d "$2" && test -r "$2" && test -x "$2"; echo "@@rc $?"
"""
GPU_SCRIPT = """\
echo "@@node ${SLURMD_NODENAME:-$(hostname)}"
echo "@@section visible"; echo "${CUDA_VISIBLE_DEVICES:-}"; echo "@@rc 0"
echo "@@section gpus"; nvidia-smi -L 2>&1; echo "@@rc $?"
echo "@@section cdi"; "$1" -m hpcsched.launcher.cdi 2>&1; echo "@@rc $?"
"""
PODMAN_FIX = ("rootless Podman must work on every compute node: run `srun -N1 podman info` and fix what it says "
              "(it needs newuidmap/newgidmap from the uidmap package, subordinate id ranges and crun or runc); "
              "docs/real-cluster.md")


@dataclass(frozen=True)
class NodeOutput:
    """The sections of a probe's output: name -> (text, exit status)."""

    node: str
    sections: Mapping[str, tuple[str, int]]

    def section(self, name: str) -> tuple[str, int]:
        return self.sections.get(name, ("(no output: the probe stopped before this)", -1))


def parse_node_output(text: str) -> NodeOutput:
    node, current = "a compute node", ""
    sections: dict[str, tuple[str, int]] = {}
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("@@node "):
            node = line[len("@@node "):].strip() or node
        elif line.startswith("@@section "):
            current, lines = line[len("@@section "):].strip(), []
        elif line.startswith("@@rc ") and current:
            rc = line[len("@@rc "):].strip()
            sections[current] = ("\n".join(lines), int(rc) if rc.lstrip("-").isdigit() else -1)
            current = ""
        elif current:
            lines.append(line)
    return NodeOutput(node, sections)


def podman_info(out: NodeOutput) -> dict[str, Any] | None:
    text, rc = out.section("podman")
    start = text.find("\n{") + 1 if not text.startswith("{") else 0  # after any warning lines
    if rc != 0 or (start == 0 and not text.startswith("{")):
        return None
    try:
        info = json.loads(text[start:])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def podman(out: NodeOutput) -> Finding:
    name = "podman"
    info = podman_info(out)
    if info is None:
        text, rc = out.section("podman")
        found = f"podman info failed on {out.node} (exit {rc}): {last_line(text)}"
        if STALE_STATE_HINT in text:
            return fail(name, found, "a job of yours there was killed together with its containers (a time limit, the "
                        "OOM killer), and Podman's state still names them: hpcsched's next job on that node resets "
                        f"it, or reset it yourself with `srun -w {out.node} podman system migrate`")
        return fail(name, found, PODMAN_FIX)
    host = info.get("host", {})
    runtime = host.get("ociRuntime", {}).get("name", "?")
    version = info.get("version", {}).get("Version", "?")
    ids = sum(int(m.get("size", 0)) for m in host.get("idMappings", {}).get("uidmap") or [])
    found = f"Podman {version} on {out.node}: runtime {runtime}, rootless, {ids} uids mapped"
    if not host.get("security", {}).get("rootless", False):
        return fail(name, f"Podman on {out.node} does not run rootless", PODMAN_FIX)
    if ids <= 1:
        return fail(name, found + " (no subordinate range on the node)", "your subordinate uid and gid ranges must "
                    "exist on the compute nodes too (/etc/subuid, /etc/subgid there); then `podman system migrate`")
    return ok(name, found)


def storage(out: NodeOutput) -> Finding:
    """The graph root and run root on the node's own disk, with room to start a container."""
    name = "storage"
    info = podman_info(out)
    if info is None:
        return fail(name, f"not checked: Podman does not work on {out.node}", "fix the podman check first")
    store = info.get("store", {})
    paths = StoragePaths(str(store.get("graphRoot", "")), str(store.get("runRoot", "")))
    free = int(store.get("graphRootAllocated", 0)) - int(store.get("graphRootUsed", 0))
    mounts = parse_mounts(out.section("mounts")[0])
    problem = storage_problem(out.node, paths, mounts, lambda _path: free, lambda path: path)
    if problem is not None:
        return fail(name, problem.split("; ")[0], problem.split("; ", 1)[-1])
    return ok(name, f"graph root {paths.graphroot} on {out.node} is node-local, {free >> 30} GiB free")


def image(out: NodeOutput, image_ref: str) -> Finding:
    name = "image"
    if podman_info(out) is None:  # `image exists` then exits 1 too, which is no answer
        return fail(name, f"not checked: Podman does not work on {out.node}", "fix the podman check first")
    text, rc = out.section("image")
    if rc == 0:
        return ok(name, f"{image_ref} is in Podman's storage on {out.node}")
    if rc == 1 and out.section("archive")[1] == 0:
        return ok(name, f"{image_ref} is not in Podman's storage on {out.node} yet; the launcher loads the pushed "
                        "archive there on first use")
    fix = (f"push it from the login node: `hpcsched image push {image_ref}` (with image_dir set to a shared "
           "directory, HPCSCHED_IMAGE_DIR), then `hpcsched image check` lists the nodes that have it; or set image "
           "to one every node has (`hpcsched config show`); docs/real-cluster.md")
    if rc == 1:
        return fail(name, f"{image_ref} is not in Podman's storage on {out.node}", fix)
    return fail(name, f"cannot check {image_ref} on {out.node} (exit {rc}): {last_line(text)}", fix)


def jobs_dir(out: NodeOutput, path: str) -> Finding:
    name = "jobs_dir"
    if out.section("jobs_dir")[1] == 0:
        return ok(name, f"{path} is visible on {out.node}")
    return fail(name, f"{path} is not visible on {out.node}", "jobs_dir must be on a file system the compute "
                "nodes share with this one (e.g. `jobs_dir = \"/scratch/$USER/hpcsched\"` in "
                "~/.config/hpcsched/config.toml, or HPCSCHED_JOBS_DIR); docs/configuration.md")


def node_checks(out: NodeOutput, image_ref: str, jobs_path: str) -> list[Finding]:
    return [podman(out), storage(out), image(out, image_ref), jobs_dir(out, jobs_path)]


def no_node(error: str, wait_s: float, names: tuple[str, ...] = NODE_CHECKS) -> list[Finding]:
    """The node checks when ``srun`` gave no node: a busy cluster is a warning, any other refusal
    (a bad partition or account...) a failure."""
    if is_busy(error):
        found = f"not checked: could not get a node within {wait_s:.0f} s (the cluster is busy)"
        return [warn(n, found, "run `hpcsched doctor --wait 600` or try again later") for n in names]
    found = f"not checked: srun could not start a step: {error}"
    fix = "srun must be able to start a 1-node step with your partition, account and qos settings (`hpcsched config show`)"
    return [fail(n, found, fix) for n in names]


def is_busy(error: str) -> bool:
    text = error.lower()
    return any(s in text for s in ("requested nodes are busy", "immediate execution impossible"))


def gpus(out: NodeOutput) -> Finding:
    name = "gpus"
    visible = out.section("visible")[0].strip()
    text, rc = out.section("gpus")
    listed = [line for line in text.splitlines() if line.startswith("GPU ")]
    if rc != 0 or not listed:
        return fail(name, f"Slurm allocated a GPU on {out.node} but nvidia-smi sees none: {last_line(text)}",
                    "ask the administrators to check gres.conf and the GPU driver on the node")
    if not visible:
        return warn(name, f"{out.node}: {len(listed)} GPU(s) seen, but CUDA_VISIBLE_DEVICES is unset",
                    "Slurm should set CUDA_VISIBLE_DEVICES for allocated GPUs: ask the administrators (gres.conf)")
    cdi, cdi_rc = out.sections.get("cdi", ("", 0))  # the launcher's own CDI check, run on the node
    if cdi_rc != 0:
        said = [line.strip() for line in cdi.splitlines() if line.strip()]
        found, _, fix = (said[-1] if said else "the CDI check printed nothing").partition("; ")
        return fail(name, found, fix or "the launcher's Python (launcher_python, HPCSCHED_LAUNCHER_PYTHON) must run "
                                        "hpcsched on the compute nodes: docs/real-cluster.md")
    return ok(name, f"{out.node}: allocated GPU(s) {visible} visible: {listed[0]}" + (f"; {cdi}" if cdi else ""))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"
