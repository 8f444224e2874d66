"""Does this node's CDI specification name the GPUs Slurm allocated? Checked before ``podman run``,
whose own answer ("unresolvable CDI devices") names neither the node nor the remedy.

Podman reads the specifications in /etc/cdi and /var/run/cdi (YAML or JSON, as
``nvidia-ctk cdi generate`` writes them). Only the device names of kind ``nvidia.com/gpu`` matter
here, so a small reader of that shape does instead of a YAML library. ``HPCSCHED_CDI_SPEC_DIRS``
(colon-separated) points the check at other directories (tests inject a missing specification so).
``python -m hpcsched.launcher.cdi`` runs the check in a Slurm step with GPUs (``hpcsched doctor``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence

GPU_KIND = "nvidia.com/gpu"
SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")
SPEC_DIRS_ENV = "HPCSCHED_CDI_SPEC_DIRS"
REMEDY = ("the node's administrator must generate it with `nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` "
          "(again after a driver or GPU change), or the site sets HPCSCHED_GPU_DEVICE_STYLE=dev "
          "(see the hpcsched docs, real-cluster.md)")

_TOP_KEY = re.compile(r"([A-Za-z][A-Za-z0-9]*):\s*(.*)$")
_NAME = re.compile(r"\s*(?:-\s+)?name:\s*(.+?)\s*$")


def spec_dirs(env: Mapping[str, str]) -> tuple[str, ...]:
    chosen = env.get(SPEC_DIRS_ENV)
    return tuple(d for d in chosen.split(":") if d) if chosen is not None else SPEC_DIRS


def _unquote(value: str) -> str:
    value = value.split(" #", 1)[0].strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _from_json(text: str) -> tuple[str, set[str]]:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        return "", set()
    devices = doc.get("devices") or []
    return str(doc.get("kind", "")), {str(d["name"]) for d in devices if isinstance(d, dict) and "name" in d}


def _from_yaml(text: str) -> tuple[str, set[str]]:
    """The top-level ``kind`` and the ``name`` of each entry under the top-level ``devices``."""
    kind, names, section = "", set(), ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or line.startswith("---"):
            continue
        top = _TOP_KEY.match(line)
        if top:
            section = top.group(1)
            if section == "kind":
                kind = _unquote(top.group(2))
            continue
        name = _NAME.match(line)
        if section == "devices" and name:
            names.add(_unquote(name.group(1)))
    return kind, names


def device_names(text: str) -> tuple[str, set[str]]:
    """(kind, device names) of one specification file's text; ("", set()) if it is not one."""
    try:
        return _from_json(text) if text.lstrip().startswith("{") else _from_yaml(text)
    except (ValueError, TypeError, KeyError):
        return "", set()


def read_specs(dirs: Sequence[str]) -> list[str]:
    """The text of every readable ``*.yaml``, ``*.yml`` and ``*.json`` file in ``dirs``."""
    texts = []
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            if name.endswith((".yaml", ".yml", ".json")):
                try:
                    with open(os.path.join(d, name), encoding="utf-8") as f:
                        texts.append(f.read())
                except (OSError, UnicodeDecodeError):
                    continue
    return texts


def gpu_names(texts: Sequence[str]) -> set[str]:
    """The ``nvidia.com/gpu`` device names these specifications define."""
    found: set[str] = set()
    for text in texts:
        kind, names = device_names(text)
        if kind == GPU_KIND:
            found |= names
    return found


def missing_gpus(gpus: Sequence[str], node: str, env: Mapping[str, str],
                 read: Callable[[Sequence[str]], list[str]] = read_specs) -> str | None:
    """Why Podman could not map these GPUs on ``node`` through CDI, or None when every one is named."""
    dirs = spec_dirs(env)
    known = gpu_names(read(dirs))
    missing = [g for g in gpus if g not in known]
    if not missing:
        return None
    where = " or ".join(dirs) or "(no directory)"
    indices = sorted((n for n in known if n.isdigit()), key=int) or sorted(known)
    found = f"they name only {', '.join(f'{GPU_KIND}={n}' for n in indices)}" if known \
        else f"none names any {GPU_KIND} device"
    wanted = ", ".join(f"{GPU_KIND}={g}" for g in missing)
    return (f"no CDI specification on {node} names {wanted}, which Slurm allocated to this job (looked in {where}: "
            f"{found}); {REMEDY}")


def check_step(env: Mapping[str, str]) -> tuple[bool, str]:
    """(passed, what was found) for the GPUs Slurm allocated to the step this process runs in."""
    from hpcsched.launcher.container import allocated_gpus  # the launcher reads them the same way

    node, gpus = env.get("SLURMD_NODENAME", "this node"), allocated_gpus(env)
    if env.get("HPCSCHED_GPU_DEVICE_STYLE") == "dev":
        return True, f"not checked on {node}: HPCSCHED_GPU_DEVICE_STYLE=dev passes device nodes, not CDI names"
    if not gpus:
        return False, f"Slurm allocated no GPU to this step on {node}"
    problem = missing_gpus(gpus, node, env)
    if problem:
        return False, problem
    return True, f"the CDI specification on {node} names {', '.join(f'{GPU_KIND}={g}' for g in gpus)}"


if __name__ == "__main__":
    passed, found = check_step(os.environ)
    print(found)
    sys.exit(0 if passed else 1)
