"""Metrics a training script logged, from its progress lines (pure).

The runtime library writes ``{"event": "metrics", "time": <unix>, "step": <int>, "attempt": <int>,
"metrics": {"val_acc": 0.93, ...}}``. Only finite numbers count as metric values; anything else in
a line is skipped, and a line with no metric value left is skipped whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def metric_history(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every metrics line as ``{"time", "step", "metrics"}``, in the order written."""
    history = []
    for record in records:
        raw, when, step = record.get("metrics"), record.get("time"), record.get("step")
        if record.get("event") != "metrics" or not isinstance(raw, Mapping) or not isinstance(when, (int, float)):
            continue
        values = {str(k): float(v) for k, v in raw.items() if _is_value(v)}
        if values and _is_value(when):
            history.append({"time": float(when), "step": step if _is_int(step) else None, "metrics": values})
    return history


def latest_metrics(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The last value of each metric name (a later line wins, also across attempts)."""
    latest: dict[str, float] = {}
    for entry in history:
        latest.update(entry["metrics"])
    return latest


def _is_value(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
