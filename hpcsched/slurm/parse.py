"""Pure parsers of ``squeue --json``, ``sacct --json`` and ``sinfo --json`` output, and of the few
plain-text outputs that have no JSON form on Slurm 22.05 (``scontrol show partition -o``).

Slurm's JSON layout changes between releases: 22.05 prints the OpenAPI plugin v0.0.38 (plain
integers and strings), 23.02 and later print data_parser v0.0.39+ (numbers wrapped as
``{"set", "infinite", "number"}``, states as lists). The schema is detected from ``meta`` and the
matching field readers are used; an unrecognised schema is an error, not a guess.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpcsched.jobs.model import JobState
from hpcsched.slurm.states import to_job_state


class SlurmParseError(ValueError):
    """Slurm printed something that is not the JSON we know."""


@dataclass(frozen=True)
class SlurmJobRecord:
    """One Slurm job (squeue) or one run of it (sacct -D prints every requeued run)."""

    job_id: int
    name: str
    comment: str
    slurm_state: str
    state: JobState
    reason: str
    node_count: int
    node_list: str
    submit_time: float | None
    start_time: float | None
    end_time: float | None
    exit_code: int | None
    restart_count: int
    user: str = ""
    uid: int | None = None  # squeue only: the owner's uid (site mode checks who may report a job)
    partition: str = ""
    priority: int = 0
    limit_end: float | None = None  # squeue only: when a running job reaches its time limit (Slurm's end_time)


@dataclass(frozen=True)
class Schema:
    name: str
    number: Callable[[Any], int | None]
    state: Callable[[Any], str]


def _plain_number(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _wrapped_number(value: Any) -> int | None:
    if isinstance(value, dict):
        if not value.get("set", False) or value.get("infinite", False):
            return None
        number = value.get("number")
        return number if isinstance(number, int) else None
    return _plain_number(value)


def _plain_state(value: Any) -> str:
    return value if isinstance(value, str) else ""


# From 23.02 a state is a list: the base state, then flags. 22.05 printed one word, a flag in
# place of the base state when one of these was set (Slurm's job_state_string, in its order):
# a requeued run is "REQUEUED" there and ["PENDING", "REQUEUED"] from 23.02; both read "REQUEUED".
STATE_FLAGS = ("COMPLETING", "STAGE_OUT", "CONFIGURING", "RESIZING", "REQUEUED", "REQUEUE_FED",
               "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED", "REVOKED", "RESV_DEL_HOLD", "SIGNALING")


def _list_state(value: Any) -> str:
    if isinstance(value, list):
        words = [w for w in value if isinstance(w, str)]
        return next((f for f in STATE_FLAGS if f in words[1:]), words[0] if words else "")
    return _plain_state(value)


V0038 = Schema("v0.0.38", _plain_number, _plain_state)
V0039 = Schema("v0.0.39+", _wrapped_number, _list_state)


def detect_schema(meta: dict[str, Any]) -> Schema:
    plugin = meta.get("plugin") or {}
    plugins = meta.get("plugins") or {}
    version = str(plugins.get("data_parser") or plugin.get("data_parser") or plugin.get("type") or "")
    if version.endswith(("v0.0.36", "v0.0.37", "v0.0.38")):
        return V0038
    if "v0.0.39" in version or "v0.0.4" in version:
        return V0039
    raise SlurmParseError(f"unrecognised Slurm JSON schema {version!r}")


def _load(text: str, key: str = "jobs", newer_key: str = "") -> tuple[Schema, str, list[dict[str, Any]]]:
    """The schema, the key found (``key``, or ``newer_key`` where a later layout renamed the
    list) and the list under it."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SlurmParseError(f"not JSON: {e}") from None
    found = newer_key if isinstance(doc, dict) and newer_key and isinstance(doc.get(newer_key), list) else key
    if not isinstance(doc, dict) or not isinstance(doc.get(found), list):
        raise SlurmParseError(f"no '{key}' list in Slurm's JSON")
    return detect_schema(doc.get("meta") or {}), found, doc[found]


# Slurm's "no value" and "infinite" sentinels (32 and 64 bit): sacct 24.11 prints a never-started
# run's start as a plain 4294967294.
UNSET = frozenset({0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFFFF})


def _time(schema: Schema, value: Any) -> float | None:
    n = schema.number(value)
    return float(n) if n and n not in UNSET else None


def parse_squeue(text: str) -> list[SlurmJobRecord]:
    schema, _, jobs = _load(text)
    return [_squeue_job(schema, j) for j in jobs]


def _squeue_job(schema: Schema, j: dict[str, Any]) -> SlurmJobRecord:
    slurm_state = schema.state(j.get("job_state"))
    state = to_job_state(slurm_state)
    started = state is not JobState.PENDING
    return SlurmJobRecord(
        job_id=int(schema.number(j.get("job_id")) or 0),
        name=str(j.get("name") or ""),
        comment=str(j.get("comment") or ""),
        slurm_state=slurm_state,
        state=state,
        reason=str(j.get("state_reason") or ""),
        node_count=int(schema.number(j.get("node_count")) or 0),
        node_list=str(j.get("nodes") or "") if started else "",
        submit_time=_time(schema, j.get("submit_time")),
        start_time=_time(schema, j.get("start_time")) if started else None,
        end_time=_time(schema, j.get("end_time")) if state.is_final else None,
        exit_code=_squeue_exit(schema, j.get("exit_code")) if state.is_final else None,
        restart_count=int(schema.number(j.get("restart_cnt")) or 0),
        user=str(j.get("user_name") or ""),
        uid=schema.number(j.get("user_id")),
        partition=str(j.get("partition") or ""),
        priority=int(schema.number(j.get("priority")) or 0),
        limit_end=_time(schema, j.get("end_time")) if state is JobState.RUNNING else None,
    )


def _squeue_exit(schema: Schema, value: Any) -> int | None:
    """Exit code as a shell reports it (128+N for signal N)."""
    if isinstance(value, dict) and "return_code" in value:
        signal_id = _signal(schema, value)
        return 128 + signal_id if signal_id else schema.number(value["return_code"])
    status = schema.number(value)
    if status is None:
        return None
    # v0.0.38 prints the raw wait status: exit code in bits 8-15, signal in bits 0-6.
    return 128 + (status & 0x7F) if status & 0x7F else status >> 8


def _sacct_exit(schema: Schema, state: JobState, value: dict[str, Any]) -> int | None:
    if not state.is_final:
        return None
    code = schema.number(value.get("return_code"))
    signal_id = _signal(schema, value)
    if signal_id:
        return 128 + signal_id
    if schema is V0038 and code == 0 and state is not JobState.COMPLETED:
        # sacct 22.05 prints return_code 0 for jobs that failed with another code: unknown, not 0.
        return None
    return code


def _signal(schema: Schema, exit_code: dict[str, Any]) -> int | None:
    """The signal that ended the job: ``signal.signal_id`` in v0.0.38, ``signal.id`` from v0.0.40."""
    signal = exit_code.get("signal")
    if not isinstance(signal, dict):
        return None
    return schema.number(signal["id"] if "id" in signal else signal.get("signal_id"))


def parse_sacct(text: str) -> list[SlurmJobRecord]:
    schema, _, jobs = _load(text)
    return [_sacct_job(schema, j) for j in jobs]


def _sacct_job(schema: Schema, j: dict[str, Any]) -> SlurmJobRecord:
    st = j.get("state") or {}
    slurm_state = schema.state(st.get("current"))
    t = j.get("time") or {}
    comment = j.get("comment")
    exit_code = j.get("exit_code") or {}
    state = to_job_state(slurm_state)
    return SlurmJobRecord(
        job_id=int(schema.number(j.get("job_id")) or 0),
        name=str(j.get("name") or ""),
        comment=str((comment.get("job") if isinstance(comment, dict) else comment) or ""),
        slurm_state=slurm_state,
        state=state,
        reason=str(st.get("reason") or ""),
        node_count=int(schema.number(j.get("allocation_nodes")) or 0),
        node_list=str(j.get("nodes") or "") if str(j.get("nodes") or "") != "None assigned" else "",
        submit_time=_time(schema, t.get("submission")),
        start_time=_time(schema, t.get("start")),
        end_time=_time(schema, t.get("end")) if state.is_final else None,
        exit_code=_sacct_exit(schema, state, exit_code),
        restart_count=int(schema.number(j.get("restart_cnt")) or 0),
        user=str(j.get("user") or ""),
    )


@dataclass(frozen=True)
class PartitionRecord:
    """One partition as ``scontrol -o show partition`` prints it; None means UNLIMITED."""

    name: str
    default: bool
    state: str
    total_nodes: int
    max_nodes: int | None
    max_cpus_per_node: int | None


@dataclass(frozen=True)
class NodeRecord:
    """One node of ``sinfo --json``: its partitions, CPUs and GPUs (from its generic resources)."""

    name: str
    partitions: tuple[str, ...]
    cpus: int
    gpus: int


def parse_partitions(text: str) -> list[PartitionRecord]:
    """``scontrol -o show partition``: one ``Key=Value ...`` line per partition."""
    records = []
    for line in text.splitlines():
        values = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if "PartitionName" not in values:
            continue
        records.append(PartitionRecord(
            name=values["PartitionName"],
            default=values.get("Default") == "YES",
            state=values.get("State", ""),
            total_nodes=_limit(values.get("TotalNodes")) or 0,
            max_nodes=_limit(values.get("MaxNodes")),
            max_cpus_per_node=_limit(values.get("MaxCPUsPerNode")),
        ))
    return records


def _limit(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def parse_sinfo_nodes(text: str) -> list[NodeRecord]:
    """``sinfo --json``: a ``nodes`` list up to 22.05; from 23.02 a ``sinfo`` list of groups of
    alike nodes of one partition, read by :func:`_sinfo_groups`."""
    schema, key, nodes = _load(text, "nodes", newer_key="sinfo")
    if key == "sinfo":
        return _sinfo_groups(schema, nodes)
    return [
        NodeRecord(
            name=str(n.get("name") or ""),
            partitions=tuple(str(p) for p in n.get("partitions") or ()),
            cpus=int(schema.number(n.get("cpus")) or 0),
            gpus=gpu_count(str(n.get("gres") or "")),
        )
        for n in nodes
    ]


def _sinfo_groups(schema: Schema, groups: list[dict[str, Any]]) -> list[NodeRecord]:
    """One record per node, its partitions gathered from every group it is in; a group's CPUs
    are per node (``cpus.minimum``), its generic resources ``gres.total``."""
    found: dict[str, NodeRecord] = {}
    for g in groups:
        partition = str((g.get("partition") or {}).get("name") or "")
        cpus = int(schema.number((g.get("cpus") or {}).get("minimum")) or 0)
        gpus = gpu_count(str((g.get("gres") or {}).get("total") or ""))
        for name in (g.get("nodes") or {}).get("nodes") or ():
            seen = found.get(name)
            partitions = (seen.partitions if seen else ()) + ((partition,) if partition else ())
            found[name] = NodeRecord(name=str(name), partitions=partitions, cpus=cpus, gpus=gpus)
    return list(found.values())


def gpu_count(gres: str) -> int:
    """GPUs in a node's generic resources: ``gpu:4``, ``gpu:a100:4(S:0-1)``, ``gpu:a:2,gpu:b:1``."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(", 1)[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def parse_node_states(text: str) -> dict[str, str]:
    """``sinfo -h -N -o "%N %t"``: node name → compact state."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def parse_node_partitions(text: str) -> list[tuple[str, str, str]]:
    """``sinfo -h -N -o "%N %P %t"``: (node, partition, compact state), a node once per partition
    it is in; the default partition's ``*`` is dropped."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append((parts[0], parts[1].rstrip("*"), parts[2]))
    return rows


def parse_idle_nodes(text: str) -> int:
    """Idle nodes in ``sinfo -h -N -o "%N %t"`` output; a node in several partitions counts once."""
    idle = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].rstrip("*~#!%$@^-") == "idle":
            idle.add(parts[0])
    return len(idle)


def parse_sbatch_parsable(text: str) -> int:
    """``sbatch --parsable`` prints ``JOBID`` or ``JOBID;CLUSTER``."""
    first = text.strip().splitlines()[-1] if text.strip() else ""
    head = first.split(";", 1)[0]
    if not head.isdigit():
        raise SlurmParseError(f"sbatch printed no job id: {text.strip()!r}")
    return int(head)


def parse_version(text: str) -> tuple[int, int, int]:
    """``sinfo --version`` prints e.g. ``slurm 22.05.8`` or ``slurm-wlm 22.05.8``."""
    parts = text.strip().split()
    if len(parts) < 2:
        raise SlurmParseError(f"cannot read a Slurm version from {text.strip()!r}")
    nums = parts[-1].split("-")[0].split(".")
    try:
        major, minor, micro = (int(x) for x in (nums + ["0", "0"])[:3])
    except ValueError:
        raise SlurmParseError(f"cannot read a Slurm version from {text.strip()!r}") from None
    return major, minor, micro
