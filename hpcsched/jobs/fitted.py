"""A job's fitted throughput and goodput model, as ``hpcsched model`` shows it (pure).

From what the job measured (:mod:`hpcsched.jobs.measured`) this fits the step-time model, sets
each measured configuration's step time beside the model's prediction, and predicts for every
node count up to a maximum the goodput-best batch configuration and the speedup over one GPU
(:func:`hpcsched.models.best_config`, :func:`hpcsched.models.speedup`). Without a noise
estimate it uses :data:`hpcsched.models.NO_NOISE_DATA`: efficiency ``M0 / M``, so the best
batch is the smallest the limits allow and the speedups are those of throughput at ``M0``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hpcsched.errors import HpcschedError
from hpcsched.jobs.measured import Configuration, MeasuredStepTime, Measurements
from hpcsched.models import (
    NO_NOISE_DATA,
    BatchConfig,
    BatchLimits,
    GradientNoise,
    ThroughputParams,
    best_config,
    fit,
    predict_step_time,
    speedup,
    statistical_efficiency,
)

PARAM_UNITS = {
    "alpha_c": "s",
    "beta_c": "s/sample",
    "alpha_r": "s",
    "beta_r": "s/replica",
    "alpha_n": "s",
    "beta_n": "s/replica",
    "gamma": "",
    "kappa": "",
}


WAIT_NOTE_SHARE = 0.1  # from this share of wall time waiting for a CPU, the report says so


class NotMeasured(HpcschedError):
    """The job has reported no step time yet, so there is nothing to fit."""


@dataclass(frozen=True)
class ConfigurationFit:
    """One measured configuration: its mean step time and the fitted model's prediction."""

    measured: MeasuredStepTime
    predicted_step_time: float

    @property
    def error_pct(self) -> float:
        """Prediction error relative to the measurement, in percent (positive: model slower)."""
        return 100.0 * (self.predicted_step_time / self.measured.step_time - 1.0)


@dataclass(frozen=True)
class NodeCountPrediction:
    """The model's best batch configuration on ``num_nodes`` nodes and its speedup over one GPU;
    ``best`` is None when the batch limits admit no configuration there."""

    num_nodes: int
    num_replicas: int
    speedup: float | None
    best: BatchConfig | None
    step_time: float | None


@dataclass(frozen=True)
class ModelReport:
    params: ThroughputParams
    fits: tuple[ConfigurationFit, ...]
    predictions: tuple[NodeCountPrediction, ...]
    current: Configuration
    limits: BatchLimits
    noise: GradientNoise | None
    procs_per_node: int
    notes: tuple[str, ...]

    @property
    def efficiency(self) -> float | None:
        """Statistical efficiency at the current global batch; None without a noise estimate."""
        if self.noise is None:
            return None
        return float(statistical_efficiency(self.noise, self.current.global_bsz, self.limits.min_global_bsz))

    @property
    def noise_scale(self) -> float | None:
        """Gradient noise scale in samples; None when unknown (not measured, or only noise)."""
        if self.noise is None or math.isinf(self.noise.noise_scale):
            return None
        return self.noise.noise_scale

    def as_dict(self) -> dict[str, Any]:
        """The JSON form ``hpcsched model --json`` prints."""
        return {
            "params": asdict(self.params),
            "param_units": PARAM_UNITS,
            "configurations": [_fit_dict(f) for f in self.fits],
            "predictions": [_prediction_dict(p) for p in self.predictions],
            "current": _config_dict(self.current),
            "limits": asdict(self.limits),
            "procs_per_node": self.procs_per_node,
            "noise": {
                "measured": self.noise is not None,
                "grad_sqr": self.noise.grad_sqr if self.noise else None,
                "grad_var": self.noise.grad_var if self.noise else None,
                "noise_scale": self.noise_scale,
                "efficiency": self.efficiency,
                "global_bsz": self.current.global_bsz,
                "base_bsz": self.limits.min_global_bsz,
            },
            "notes": list(self.notes),
        }


def model_report(measurements: Measurements, max_nodes: int, procs_per_node: int | None = None) -> ModelReport:
    """Fit the job's measurements and predict for 1 to ``max_nodes`` nodes of ``procs_per_node``
    ranks each (default: as many as the job runs now). Raises :class:`NotMeasured` without any
    step time."""
    current, limits = measurements.current, measurements.limits
    if not measurements.step_times or current is None or limits is None:
        raise NotMeasured("no step times measured yet")
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, not {max_nodes}")
    per_node = procs_per_node or current.procs_per_node
    params = fit(measurements.observations())
    noise = measurements.noise or NO_NOISE_DATA
    fits = tuple(ConfigurationFit(m, _step_time(params, m.config)) for m in measurements.step_times)
    speedups, speedup_note = _speedups(params, noise, max_nodes, per_node, limits)
    predictions = tuple(
        _prediction(params, noise, n, n * per_node, limits, s) for n, s in zip(range(1, max_nodes + 1), speedups, strict=True)
    )
    notes = (*_notes(measurements), *speedup_note)
    return ModelReport(params, fits, predictions, current, limits, measurements.noise, per_node, notes)


def _step_time(params: ThroughputParams, config: Configuration) -> float:
    return float(predict_step_time(params, config.num_nodes, config.num_replicas, config.local_bsz, config.accum_steps))


def _speedups(
    params: ThroughputParams, noise: GradientNoise, max_nodes: int, per_node: int, limits: BatchLimits
) -> tuple[list[float | None], tuple[str, ...]]:
    nodes = np.arange(1, max_nodes + 1)
    try:
        values = speedup(params, noise, nodes, nodes * per_node, limits)
    except ValueError:
        return [None] * max_nodes, (
            "the job does not fit on one GPU within its batch limits, so there is no speedup over one GPU to show",
        )
    return [float(v) for v in values], ()


def _prediction(
    params: ThroughputParams,
    noise: GradientNoise,
    num_nodes: int,
    num_replicas: int,
    limits: BatchLimits,
    speedup_value: float | None,
) -> NodeCountPrediction:
    try:
        best = best_config(params, noise, num_nodes, num_replicas, limits)
    except ValueError:
        return NodeCountPrediction(num_nodes, num_replicas, speedup_value, None, None)
    config = Configuration(num_nodes, num_replicas, best.local_bsz, best.accum_steps)
    return NodeCountPrediction(num_nodes, num_replicas, speedup_value, best, _step_time(params, config))


def _notes(measurements: Measurements) -> tuple[str, ...]:
    notes = list(measurements.problems)
    if measurements.cpu_wait_share >= WAIT_NOTE_SHARE:
        notes.append(
            f"the job waited for a CPU that other processes held during {measurements.cpu_wait_share:.0%} of its "
            "timed wall time; its step times leave that wait out, so they describe nodes of its own"
        )
    if len(measurements.step_times) == 1:
        notes.append(
            "only one configuration measured: the constants it cannot separate (network terms, how "
            "compute splits between fixed and per-sample time) come from the fit's prior"
        )
    if measurements.noise is None:
        notes.append(
            "no gradient noise reported: efficiency is unknown and taken as M0/M (NO_NOISE_DATA)"
            + (", so the best batch is the smallest the limits allow" if measurements.adaptive else "")
        )
    if not measurements.adaptive:
        notes.append("fixed batch size: the only batch considered is the current global batch")
    return tuple(notes)


def _config_dict(config: Configuration) -> dict[str, int]:
    return {**asdict(config), "global_bsz": config.global_bsz}


def _fit_dict(f: ConfigurationFit) -> dict[str, Any]:
    return {
        **_config_dict(f.measured.config),
        "timed_steps": f.measured.timed_steps,
        "measured_step_time": f.measured.step_time,
        "cpu_wait": f.measured.cpu_wait,
        "predicted_step_time": f.predicted_step_time,
        "error_pct": f.error_pct,
    }


def _prediction_dict(p: NodeCountPrediction) -> dict[str, Any]:
    best = None
    if p.best is not None:
        best = {**asdict(p.best), "goodput": p.best.goodput, "step_time": p.step_time}
    return {"num_nodes": p.num_nodes, "num_replicas": p.num_replicas, "speedup": p.speedup, "best": best}
