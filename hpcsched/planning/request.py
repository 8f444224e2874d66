"""The job request: every option of ``hpcsched run``, validated and normalised.

``JobRequest.from_options`` is the one place raw user input becomes a trusted value; the daemon
calls it again on what arrives over the socket, so nothing reaches a batch script unvalidated.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hpcsched.errors import ValidationError
from hpcsched.planning import fields
from hpcsched.planning.fields import NodeRange

DEFAULT_IMAGE = "localhost/hpcsched-train:latest"
MAX_SCRIPT_ARGS = 1000
# The work directory is mounted at the same path in the container: one of these would hide the
# image's own system files (or expose the node's kernel interfaces), so none may be a work directory.
SYSTEM_DIRS = frozenset({"/", "/bin", "/boot", "/etc", "/lib", "/lib64", "/run", "/sbin", "/usr", "/var"})
KERNEL_TREES = ("/proc", "/sys", "/dev")
# Seconds without a progress line before the driver ends an elastic job's attempt as hung (C2). It
# counts from rank 0's last line, written before the step's all-reduce, so with the runtime
# library's collective timeout (also 600 s) the driver acts first and the job is requeued.
DEFAULT_HANG_TIMEOUT, MAX_HANG_TIMEOUT = 600, 7 * 86400


@dataclass(frozen=True)
class JobRequest:
    script: str
    workdir: str
    name: str
    nodes: NodeRange
    start_nodes: int | None = None
    script_args: tuple[str, ...] = ()
    gpus_per_node: int = 0
    gpu_type: str | None = None
    cpus_per_node: int = 1
    procs_per_node: int = 1
    mem_mb: int | None = None  # 0: all the memory of each node
    mem_per_cpu_mb: int | None = None  # used only without mem_mb
    time_seconds: int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    reservation: str | None = None
    exclusive: bool = False
    image: str = DEFAULT_IMAGE
    env: tuple[tuple[str, str], ...] = ()
    sbatch_extra: tuple[str, ...] = ()
    max_failures: int = 3
    hang_timeout: int = DEFAULT_HANG_TIMEOUT

    @property
    def elastic(self) -> bool:
        return self.nodes.elastic

    @classmethod
    def from_options(cls, raw: Mapping[str, Any]) -> JobRequest:
        """Validate a mapping of option values (as the CLI or the socket delivers them)."""
        known = {
            "script", "workdir", "name", "nodes", "script_args", "gpus_per_node", "cpus_per_node",
            "procs_per_node", "mem", "time", "partition", "account", "qos", "image", "env", "sbatch",
            "start_nodes", "max_failures", "hang_timeout", "gpu_type", "mem_per_cpu", "constraint",
            "reservation", "exclusive",
        }
        unknown = set(raw) - known
        if unknown:
            raise ValidationError(sorted(unknown)[0], "unknown request field")
        script = _absolute_path("SCRIPT", raw.get("script"))
        workdir = _absolute_path("--workdir", raw.get("workdir"))
        _check_workdir_path(workdir)
        if not (script.startswith(workdir.rstrip("/") + "/")):
            raise ValidationError(
                "SCRIPT",
                f"{script} is not inside the work directory {workdir}, which is what the container sees; "
                "pass --workdir or run from a directory that contains the script",
            )
        gpus, gpu_type = _gpus(raw)
        procs_raw = raw.get("procs_per_node")
        procs = fields.parse_procs_per_node(procs_raw if procs_raw is not None else max(gpus, 1))
        if gpus and procs > gpus:
            raise ValidationError("--procs-per-node", f"{procs} processes for {fields.format_count(gpus, 'GPU')} per "
                                                      "node; at most one per GPU")
        name_raw = raw.get("name") or default_name(script)
        nodes = fields.parse_nodes(str(raw.get("nodes", "1")))
        start = raw.get("start_nodes")
        if start is not None:
            start = fields.parse_count("--start-nodes", start, nodes.min, nodes.max)
        max_failures = fields.parse_count("--max-failures", raw.get("max_failures", 3), 0, 100)
        hang_timeout = fields.parse_count("--hang-timeout", raw.get("hang_timeout", DEFAULT_HANG_TIMEOUT), 0, MAX_HANG_TIMEOUT)
        return cls(
            script=script,
            workdir=workdir,
            name=fields.parse_name(str(name_raw)),
            nodes=nodes,
            start_nodes=start,
            max_failures=max_failures,
            hang_timeout=hang_timeout,
            script_args=_script_args(raw.get("script_args", ())),
            gpus_per_node=gpus,
            gpu_type=gpu_type,
            cpus_per_node=fields.parse_cpus_per_node(raw.get("cpus_per_node", 1) or 1),
            procs_per_node=procs,
            mem_mb=_optional(raw.get("mem"), fields.parse_mem),
            mem_per_cpu_mb=_mem_per_cpu(raw),
            time_seconds=_optional(raw.get("time"), fields.parse_time),
            partition=_optional(raw.get("partition"), lambda v: fields.parse_partitions("--partition", v)),
            account=_optional(raw.get("account"), lambda v: fields.parse_slurm_word("--account", v)),
            qos=_optional(raw.get("qos"), lambda v: fields.parse_slurm_word("--qos", v)),
            constraint=_optional(raw.get("constraint"), fields.parse_constraint),
            reservation=_optional(raw.get("reservation"), lambda v: fields.parse_slurm_word("--reservation", v)),
            exclusive=_switch("--exclusive", raw.get("exclusive", False)),
            image=fields.parse_image(str(raw.get("image") or DEFAULT_IMAGE)),
            env=tuple(fields.parse_env(str(e)) for e in _sequence("--env", raw.get("env", ()))),
            sbatch_extra=tuple(fields.parse_sbatch_directive(str(s)) for s in _sequence("--sbatch", raw.get("sbatch", ()))),
        )

    def to_options(self) -> dict[str, Any]:
        """The inverse of :meth:`from_options` (what travels over the socket and is stored)."""
        d = asdict(self)
        return {
            "script": self.script,
            "workdir": self.workdir,
            "name": self.name,
            "nodes": str(self.nodes),
            "start_nodes": self.start_nodes,
            "max_failures": self.max_failures,
            "hang_timeout": self.hang_timeout,
            "script_args": list(self.script_args),
            "gpus_per_node": self.gpus_per_node,
            "gpu_type": self.gpu_type,
            "cpus_per_node": self.cpus_per_node,
            "procs_per_node": self.procs_per_node,
            "mem": f"{self.mem_mb}M" if self.mem_mb is not None else None,
            "mem_per_cpu": f"{self.mem_per_cpu_mb}M" if self.mem_per_cpu_mb is not None else None,
            "time": fields.format_time(self.time_seconds) if self.time_seconds else None,
            "partition": d["partition"],
            "account": d["account"],
            "qos": d["qos"],
            "constraint": self.constraint,
            "reservation": self.reservation,
            "exclusive": self.exclusive,
            "image": self.image,
            "env": [f"{k}={v}" for k, v in self.env],
            "sbatch": list(self.sbatch_extra),
        }


def sbatch_resources(request: JobRequest) -> tuple[str, ...]:
    """The request's optional sbatch options, in batch-script order. Every value was validated by
    :meth:`JobRequest.from_options`; a constraint holds ``&`` and ``|``, so it is passed quoted."""
    memory = (f"--mem={request.mem_mb}M" if request.mem_mb is not None
              else f"--mem-per-cpu={request.mem_per_cpu_mb}M" if request.mem_per_cpu_mb is not None else None)
    options = (
        memory,
        request.time_seconds and f"--time={fields.format_time(request.time_seconds)}",
        request.gpus_per_node and f"--gpus-per-node={fields.format_gpus(request.gpus_per_node, request.gpu_type)}",
        request.partition and f"--partition={request.partition}",
        request.account and f"--account={request.account}",
        request.qos and f"--qos={request.qos}",
        request.constraint and f'--constraint="{request.constraint}"',
        request.reservation and f"--reservation={request.reservation}",
        request.exclusive and "--exclusive",
    )
    return tuple(option for option in options if option)


def default_name(script: str) -> str:
    """A job name from the script's file name, reduced to the allowed characters."""
    stem = posixpath.splitext(posixpath.basename(script))[0]
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in stem)
    cleaned = cleaned.lstrip("._-")[:64]
    return cleaned or "job"


def _check_workdir_path(workdir: str) -> None:
    if any(c in workdir for c in ":,"):
        raise ValidationError("--workdir", f"{workdir!r} contains ':' or ',', which a container bind mount cannot express")
    if workdir in SYSTEM_DIRS or any(workdir == t or workdir.startswith(t + "/") for t in KERNEL_TREES):
        raise ValidationError("--workdir", f"{workdir} is a system directory; the container mounts the work directory "
                              "over the same path, so use a directory of your own")


def _absolute_path(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "a path is required")
    fields.check_text(field, value)
    if not posixpath.isabs(value):
        raise ValidationError(field, f"{value!r} must be an absolute path")
    return posixpath.normpath(value)


def _gpus(raw: Mapping[str, Any]) -> tuple[int, str | None]:
    """The GPU count and type, from ``a100:4`` as typed or from a stored count and type."""
    count, gpu_type = fields.parse_typed_gpus(raw.get("gpus_per_node", 0) or 0)
    stored_type = raw.get("gpu_type")
    if stored_type is None or stored_type == "":
        return count, gpu_type
    if gpu_type is not None:
        raise ValidationError("--gpus-per-node", "the GPU type is given twice")
    return fields.parse_typed_gpus(f"{stored_type}:{count}")


def _mem_per_cpu(raw: Mapping[str, Any]) -> int | None:
    value = _optional(raw.get("mem_per_cpu"), lambda v: fields.parse_mem(v, "mem_per_cpu"))
    if value is not None and raw.get("mem") not in (None, ""):
        raise ValidationError("--mem", "memory is given both per node (--mem) and per CPU (mem_per_cpu); give one")
    if value == 0:
        raise ValidationError("mem_per_cpu", "must be at least 1M (for all of a node's memory, use --mem 0)")
    return value  # type: ignore[no-any-return]


def _switch(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, f"expected true or false, got {value!r}")
    return value


def _script_args(value: Any) -> tuple[str, ...]:
    args = _sequence("SCRIPT_ARGS", value)
    if len(args) > MAX_SCRIPT_ARGS:
        raise ValidationError("SCRIPT_ARGS", f"more than {MAX_SCRIPT_ARGS} arguments")
    return tuple(fields.check_text("SCRIPT_ARGS", str(a)) for a in args)


def _sequence(field: str, value: Any) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValidationError(field, "expected a list")
    return value


def _optional(value: Any, parse: Any) -> Any:
    if value is None or value == "":
        return None
    return parse(str(value))
