"""Validation of single request fields. Each parser returns a normalised value or raises
:class:`ValidationError` naming the option and the limit. Pure: no file system, no clock."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcsched.errors import ValidationError

MAX_NODES = 4096
MAX_GPUS_PER_NODE = 64
MAX_CPUS_PER_NODE = 1024
MAX_PROCS_PER_NODE = 256
MAX_TIME_SECONDS = 365 * 24 * 3600
MAX_MEM_MB = 64 * 1024 * 1024  # 64 TiB
MAX_PARTITIONS = 16
MAX_CONSTRAINT_CHARS = 1024

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SLURM_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MEM = re.compile(r"(\d{1,12})([KMGT]?)B?", re.IGNORECASE)
_INT = re.compile(r"\d{1,9}")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_GPU_TYPE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A feature name in --constraint; a count in brackets ([rack1*2|rack2*4]) is Slurm's too, but
# hpcsched accepts the plain grammar: features joined by & (and) or | (or), optionally parenthesised.
_FEATURE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_CONSTRAINT_TOKEN = re.compile(r"\s*(?:([()&|])|([^\s()&|]+))")
_SBATCH_DIRECTIVE = re.compile(r"--[a-z][a-z0-9-]{1,40}(=[A-Za-z0-9_.,:/@+%=*\[\]-]{1,200})?")

# Options hpcsched sets itself; an extra directive may not override them.
RESERVED_SBATCH = frozenset(
    {
        "--nodes", "--ntasks", "--ntasks-per-node", "--job-name", "--comment", "--output",
        "--error", "--chdir", "--wrap", "--requeue", "--no-requeue", "--open-mode", "--signal",
        "--uid", "--gid", "--export", "--export-file", "--get-user-env", "--parsable",
        "--partition", "--account", "--qos", "--time", "--mem", "--gpus-per-node",
        "--cpus-per-task", "--input", "--array", "--container", "--mem-per-cpu", "--mem-per-gpu",
    }
)
# Names --env refuses, each with the reason the user is told (docs/runtime.md explains the table).
# Loader, shell start-up and Python path variables change what code runs in every process of the
# job, hpcsched's own included; the others are set by Slurm, hpcsched or torchrun, or read by
# Slurm's commands as options.
_LOADER = (
    "is a dynamic loader variable: it changes the libraries every process of the job loads, hpcsched's own "
    "included; put libraries into the image"
)
_SLURM_INPUT = "is read by Slurm's commands as an option; use hpcsched's options or --sbatch"
_SLURM_SET = "is set by Slurm for the job"
_TORCHRUN = "is set by torchrun for every training process"
REFUSED_ENV_PREFIXES: tuple[tuple[str, str], ...] = (
    ("LD_", _LOADER),
    ("BASH_FUNC_", "is an exported shell function: it replaces a command in every bash script of the job"),
    ("SLURM_", _SLURM_SET),
    ("SLURMD_", _SLURM_SET),
    ("SBATCH_", _SLURM_INPUT),
    ("SRUN_", _SLURM_INPUT),
    ("SALLOC_", _SLURM_INPUT),
    ("HPCSCHED_", "is set by hpcsched for the job"),
    ("TORCHELASTIC_", _TORCHRUN),
)
REFUSED_ENV: dict[str, str] = {
    "BASH_ENV": "is a shell start-up file: every non-interactive bash of the job would run it",
    "ENV": "is a shell start-up file: sh and bash in POSIX mode would run it",
    "PYTHONHOME": "changes which Python library hpcsched's own processes in the container load",
    "PYTHONPATH": "changes which modules hpcsched's own processes in the container import; put packages into the image",
    "PATH": "is set by the image (hpcsched's processes find python3 and torchrun through it)",
    "HOME": "is set by hpcsched for the container",
    "CUDA_VISIBLE_DEVICES": "is set from the GPUs Slurm allocated",
    "NVIDIA_VISIBLE_DEVICES": "is set from the GPUs Slurm allocated (it chooses the devices the container gets)",
    "GPU_DEVICE_ORDINAL": "is set by Slurm from the GPUs it allocated",
    "ROCR_VISIBLE_DEVICES": "is set by Slurm from the GPUs it allocated",
    **{name: _TORCHRUN for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE",
                                    "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "NODE_RANK",
                                    "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE")},
}


def env_refusal(key: str) -> str | None:
    """Why ``--env`` may not set ``key`` (None: it may)."""
    if key in REFUSED_ENV:
        return REFUSED_ENV[key]
    return next((why for prefix, why in REFUSED_ENV_PREFIXES if key.startswith(prefix)), None)


@dataclass(frozen=True)
class NodeRange:
    """``--nodes N`` (fixed) or ``--nodes MIN-MAX`` (elastic)."""

    min: int
    max: int

    @property
    def elastic(self) -> bool:
        return self.max > self.min

    def __str__(self) -> str:
        return str(self.min) if self.min == self.max else f"{self.min}-{self.max}"


def shown(text: str, limit: int = 60) -> str:
    """A user's value as an error message quotes it: at most ``limit`` characters, then …"""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text):,} characters)"


def format_count(count: int, noun: str) -> str:
    """``1 node``, ``2 nodes``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _bounded_int(field: str, text: str, low: int, high: int, unit: str = "") -> int:
    """``unit`` (plural, with a leading space: " days") is said with the bounds."""
    text = text.strip()
    if not _INT.fullmatch(text):
        raise ValidationError(field, f"expected a whole number between {low} and {high}{unit}, got {shown(text)}")
    value = int(text)
    if not low <= value <= high:
        raise ValidationError(field, f"must be between {low} and {high}{unit}, got {value}{unit}")
    return value


def parse_nodes(text: str) -> NodeRange:
    field = "--nodes"
    parts = str(text).split("-")
    if len(parts) == 1:
        n = _bounded_int(field, parts[0], 1, MAX_NODES)
        return NodeRange(n, n)
    if len(parts) == 2:
        low = _bounded_int(field, parts[0], 1, MAX_NODES)
        high = _bounded_int(field, parts[1], 1, MAX_NODES)
        if high < low:
            raise ValidationError(field, f"range {text!r} has its maximum below its minimum")
        return NodeRange(low, high)
    raise ValidationError(field, f"expected N or MIN-MAX, got {text!r}")


def parse_count(field: str, value: int | str, low: int, high: int) -> int:
    return _bounded_int(field, str(value), low, high)


def parse_gpus_per_node(value: int | str) -> int:
    return parse_count("--gpus-per-node", value, 0, MAX_GPUS_PER_NODE)


def parse_typed_gpus(value: int | str) -> tuple[int, str | None]:
    """``--gpus-per-node``: a count (``4``) or a GPU type and count as Slurm writes it (``a100:4``)."""
    field = "--gpus-per-node"
    gpu_type, sep, count = str(value).strip().rpartition(":")
    if not sep:
        return parse_gpus_per_node(count), None
    if not _GPU_TYPE.fullmatch(gpu_type):
        raise ValidationError(field, f"GPU type {gpu_type!r} is not allowed: use letters, digits, '_' or '-', "
                              "as in a100:4")
    return parse_count(field, count, 1, MAX_GPUS_PER_NODE), gpu_type


def format_gpus(count: int, gpu_type: str | None) -> str:
    return f"{gpu_type}:{count}" if gpu_type else str(count)


def parse_cpus_per_node(value: int | str) -> int:
    return parse_count("--cpus-per-node", value, 1, MAX_CPUS_PER_NODE)


def parse_procs_per_node(value: int | str) -> int:
    return parse_count("--procs-per-node", value, 1, MAX_PROCS_PER_NODE)


def parse_time(text: str) -> int:
    """Slurm time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) to seconds, > 0 and ≤ 365 days."""
    field = "--time"
    raw = str(text).strip()
    days = 0
    rest = raw
    if "-" in raw:
        d, rest = raw.split("-", 1)
        days = _bounded_int(field, d, 0, 365, " days")
        parts = rest.split(":")
        if not 1 <= len(parts) <= 3:
            raise ValidationError(field, f"expected D-H[:M[:S]], got {raw!r}")
        nums = [_bounded_int(field, p, 0, 10**6) for p in parts] + [0] * (3 - len(parts))
        hours, minutes, seconds = nums
    else:
        parts = rest.split(":")
        if not 1 <= len(parts) <= 3:
            raise ValidationError(field, f"expected M, M:S or H:M:S, got {raw!r}")
        nums = [_bounded_int(field, p, 0, 10**6) for p in parts]
        if len(nums) == 1:
            hours, minutes, seconds = 0, nums[0], 0
        elif len(nums) == 2:
            hours, minutes, seconds = 0, nums[0], nums[1]
        else:
            hours, minutes, seconds = nums
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValidationError(field, f"must be longer than zero, got {raw!r}")
    if total > MAX_TIME_SECONDS:
        raise ValidationError(field, f"must be at most 365 days, got {raw!r}")
    return total


def format_time(seconds: int) -> str:
    """Seconds to Slurm's D-HH:MM:SS."""
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def parse_mem(text: str, field: str = "--mem") -> int:
    """Memory per node (``500M``, ``16G``, plain number = MiB) to MiB; ``0`` is Slurm's "all the
    memory of each node"."""
    m = _MEM.fullmatch(str(text).strip())
    if not m:
        raise ValidationError(field, f"expected a size such as 4000M or 16G, got {text!r}")
    factor = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    mb = int(int(m.group(1)) * factor)
    if mb == 0 and int(m.group(1)) == 0:
        return 0
    if mb <= 0:
        raise ValidationError(field, f"must be at least 1M, got {text!r}")
    if mb > MAX_MEM_MB:
        raise ValidationError(field, f"must be at most 64T, got {text!r}")
    return mb


def parse_name(text: str, field: str = "--name") -> str:
    if not _NAME.fullmatch(text):
        raise ValidationError(
            field,
            f"{shown(text)} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return text


def parse_slurm_word(field: str, text: str) -> str:
    if not _SLURM_WORD.fullmatch(text):
        raise ValidationError(field, f"{shown(text)} is not a valid Slurm name (letters, digits, '_', '.', '-')")
    return text


def parse_partitions(field: str, text: str) -> str:
    """One partition or several, comma-separated (``gpu,gpu-long``): Slurm starts the job in
    whichever can start it first."""
    names = text.split(",")
    if len(names) > MAX_PARTITIONS:
        raise ValidationError(field, f"at most {MAX_PARTITIONS} partitions, got {len(names)}")
    for name in names:
        if not _SLURM_WORD.fullmatch(name):
            where = f" in {text!r}" if len(names) > 1 else ""
            raise ValidationError(field, f"{name!r}{where} is not a valid Slurm name (letters, digits, '_', '.', "
                                  "'-'; several partitions are separated by ',')")
    if len(set(names)) < len(names):
        raise ValidationError(field, f"{text!r} names a partition twice")
    return text


def parse_constraint(text: str) -> str:
    """``--constraint``: node features joined by ``&`` (all of) and ``|`` (any of), with
    parentheses, e.g. ``a100|h100`` or ``(a100|h100)&ib``. Returned without spaces."""
    field = "--constraint"
    if len(text) > MAX_CONSTRAINT_CHARS:
        raise ValidationError(field, f"longer than {MAX_CONSTRAINT_CHARS} characters")
    tokens = _constraint_tokens(text)
    depth, expect_feature = 0, True
    for token in tokens:
        if token == "(" and expect_feature:
            depth += 1
        elif token == ")" and not expect_feature and depth:
            depth -= 1
        elif token in "&|" and not expect_feature:
            expect_feature = True
        elif token not in "()&|" and expect_feature:
            expect_feature = False
        else:
            raise ValidationError(field, f"{text!r}: unexpected {token!r}; write features joined by & or |, "
                                  "e.g. a100|h100 or (a100|h100)&ib")
    if expect_feature or depth:
        raise ValidationError(field, f"{text!r} is incomplete: a feature or ')' is missing at the end")
    return "".join(tokens)


def _constraint_tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = _CONSTRAINT_TOKEN.match(text, pos)
        assert m is not None  # the pattern matches any non-space character
        token = m.group(1) or m.group(2)
        if m.group(2) and not _FEATURE.fullmatch(token):
            raise ValidationError("--constraint", f"{token!r} is not a node feature name "
                                  "(letters, digits, '_', '.', '-')")
        tokens.append(token)
        pos = m.end()
    if not tokens:
        raise ValidationError("--constraint", "empty: name at least one node feature")
    return tokens


def parse_host(text: str) -> str:
    """A login node's short host name, as it names the daemon's socket, lock and store."""
    if not _HOST.fullmatch(text):
        raise ValidationError("host", f"{text!r} is not a host name (1-63 letters, digits or '-')")
    return text


def parse_image(text: str) -> str:
    if not _IMAGE.fullmatch(text):
        raise ValidationError("--image", f"{text!r} is not a valid image reference")
    return text


def parse_env(item: str) -> tuple[str, str]:
    field = "--env"
    key, sep, value = item.partition("=")
    if not sep:
        raise ValidationError(field, f"expected KEY=VALUE, got {item!r}")
    if not _ENV_KEY.fullmatch(key):
        raise ValidationError(field, f"{key!r} is not a valid variable name")
    why = env_refusal(key)
    if why:
        raise ValidationError(field, f"{key} cannot be set: it {why}")
    check_text(field, value)
    return key, value


def parse_sbatch_directive(text: str) -> str:
    field = "--sbatch"
    if not _SBATCH_DIRECTIVE.fullmatch(text):
        raise ValidationError(
            field, f"{text!r} is not an sbatch long option of the form --option or --option=value"
        )
    option = text.split("=", 1)[0]
    # sbatch reads #SBATCH lines with getopt_long, which accepts any unambiguous prefix of an
    # option (--out means --output); --gpus is an sbatch option of its own, not --gpus-per-node.
    if option in RESERVED_SBATCH or (option != "--gpus" and any(r.startswith(option) for r in RESERVED_SBATCH)):
        raise ValidationError(field, f"{option} is set by hpcsched; use its own option instead")
    return text


def check_text(field: str, text: str, max_len: int = 4096) -> str:
    """Free text (a path, an argument, a value) may hold anything but NUL, newlines and CR."""
    if any(c in text for c in "\x00\n\r"):
        raise ValidationError(field, f"{text!r} contains a newline or NUL character")
    if len(text) > max_len:
        raise ValidationError(field, f"longer than {max_len} characters")
    return text
