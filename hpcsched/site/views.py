"""An elastic job's allocator view as JSON, both ways (pure).

A personal daemon sends its jobs' views to the coordinator; the coordinator's socket is a trust
boundary, so :func:`view_from_json` accepts only finite numbers of the right type in their ranges
and names the first field that is wrong. A user can only describe their own jobs (the coordinator
checks the owner of every Slurm job reported), so a made-up model moves only that user's jobs,
within their Slurm node range and the user's share.
"""

from __future__ import annotations

import math
from typing import Any

from hpcsched.allocator import ElasticJob, GoodputModel, RestartCost
from hpcsched.errors import ValidationError
from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.throughput import ThroughputParams

MAX_NODES = 100_000
MAX_BATCH = 10**9
PARAMS = ("alpha_c", "beta_c", "alpha_n", "beta_n", "alpha_r", "beta_r", "gamma", "kappa")
TIMES = ("age_s", "time_in_state_s", "time_at_size_s")


def view_to_json(job: ElasticJob) -> dict[str, Any]:
    m = job.model
    return {
        "params": {k: getattr(m.params, k) for k in PARAMS},
        "noise": {"grad_sqr": m.noise.grad_sqr, "grad_var": m.noise.grad_var},
        "limits": {"min_global_bsz": m.limits.min_global_bsz, "max_global_bsz": m.limits.max_global_bsz,
                   "max_local_bsz": m.limits.max_local_bsz, "max_accum_steps": m.limits.max_accum_steps},
        "min_nodes": job.min_gpus, "max_nodes": job.max_gpus, "current_nodes": job.current_gpus,
        "remaining_work": None if math.isinf(job.remaining_work) else job.remaining_work,
        **{k: (None if math.isinf(getattr(job, k)) else getattr(job, k)) for k in TIMES},
        "restarts": job.restarts,
        "climbing": job.climbing,
        "never_ran": job.never_ran,
        "restart": {"checkpoint_s": job.restart.checkpoint_s, "start_s": job.restart.start_s,
                    "queue_wait_s": job.restart.queue_wait_s},
    }


def _number(data: dict[str, Any], key: str, where: str, low: float = 0.0, high: float = math.inf,
            missing_is_inf: bool = False) -> float:
    value = data.get(key)
    if value is None and missing_is_inf:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ValidationError(f"{where}{key}", f"expected a finite number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _count(data: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{where}{key}", f"expected a whole number in [{low}, {high}], got {value!r}")
    return value


def _flag(data: dict[str, Any], key: str) -> bool:
    """An optional true/false field (absent: false; agents older than the field send none)."""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ValidationError(key, f"expected true or false, got {value!r}")
    return value


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValidationError(key, f"expected an object, got {type(value).__name__}")
    return value


def view_from_json(key: str, data: Any, user: str) -> ElasticJob:
    """The view a report carries, checked field by field (:class:`ValidationError` names the
    first bad one)."""
    if not isinstance(data, dict):
        raise ValidationError("view", f"expected an object, got {type(data).__name__}")
    params, noise, limits = _object(data, "params"), _object(data, "noise"), _object(data, "limits")
    restart = _object(data, "restart")
    try:
        model = GoodputModel(
            ThroughputParams(**{k: _number(params, k, "params.", high=1e6) for k in PARAMS}),
            GradientNoise(_number(noise, "grad_sqr", "noise.", high=1e30), _number(noise, "grad_var", "noise.", high=1e30)),
            BatchLimits(_count(limits, "min_global_bsz", "limits.", 1, MAX_BATCH),
                        _count(limits, "max_global_bsz", "limits.", 1, MAX_BATCH),
                        _count(limits, "max_local_bsz", "limits.", 1, MAX_BATCH),
                        _count(limits, "max_accum_steps", "limits.", 0, 10_000)),
        )
        return ElasticJob(
            key=key, model=model,
            min_gpus=_count(data, "min_nodes", "", 1, MAX_NODES), max_gpus=_count(data, "max_nodes", "", 1, MAX_NODES),
            current_gpus=_count(data, "current_nodes", "", 0, MAX_NODES),
            remaining_work=_number(data, "remaining_work", "", missing_is_inf=True),
            age_s=_number(data, "age_s", "", high=1e10),
            time_in_state_s=_number(data, "time_in_state_s", "", high=1e10),
            time_at_size_s=_number(data, "time_at_size_s", "", high=1e10, missing_is_inf=True),
            restarts=_count(data, "restarts", "", 0, 10**6),
            restart=RestartCost(checkpoint_s=_number(restart, "checkpoint_s", "restart.", high=86400),
                                start_s=_number(restart, "start_s", "restart.", high=86400),
                                queue_wait_s=_number(restart, "queue_wait_s", "restart.", high=10**7)),
            user=user,
            climbing=_flag(data, "climbing"),
            never_ran=_flag(data, "never_ran"),
        )  # fmt: skip
    except ValueError as e:  # the models' own consistency checks (gamma >= 1, min <= max, ...)
        raise ValidationError("view", str(e)) from None
