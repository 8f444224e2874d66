"""Progress of a job from the runtime library's progress lines, and its completion estimate (pure).

The estimate uses only the current attempt's recent steps: the step rate at the job's current
size, as measured, times the steps left. A resize therefore changes the estimate as soon as the
new attempt has reported a few steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

WINDOW = 20  # recent step lines used for the rate


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Progress records from JSON lines; a torn or foreign line is skipped, not fatal."""
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("time"), (int, float)):
            out.append(record)
    return out


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest step, epoch, samples, loss, throughput (samples/s), step time and ETA."""
    records = list(records)
    if not records:
        return None
    last = records[-1]
    attempt = last.get("attempt")
    current = [r for r in records if r.get("attempt") == attempt and r.get("event") in ("start", "step", "checkpoint")]
    window = current[-WINDOW:]
    throughput = step_time = None
    if len(window) >= 2:
        first, latest = window[0], window[-1]
        elapsed = float(latest["time"]) - float(first["time"])
        steps = int(latest.get("step") or 0) - int(first.get("step") or 0)
        samples = int(latest.get("samples") or 0) - int(first.get("samples") or 0)
        if elapsed > 0 and steps > 0:
            step_time = elapsed / steps
            throughput = samples / elapsed
    total = last.get("total_steps")
    step = int(last.get("step") or 0)
    remaining = None
    if isinstance(total, int) and step_time is not None:
        remaining = max(0, total - step) * step_time
    done = last.get("event") == "done"
    return {
        "attempt": attempt,
        "event": last.get("event"),
        "step": step,
        "total_steps": total,
        "total_samples": last.get("total_samples"),
        "epoch": last.get("epoch"),
        "samples": last.get("samples"),
        "loss": last.get("loss"),
        "world_size": last.get("world_size"),
        "global_batch": last.get("global_batch"),
        "throughput": throughput,
        "step_time": step_time,
        "remaining_seconds": 0.0 if done else remaining,
        "eta": float(last["time"]) if done else (float(last["time"]) + remaining if remaining is not None else None),
        "updated": float(last["time"]),
        "elastic": any(bool(r.get("elastic")) for r in records if r.get("event") == "start"),
    }
