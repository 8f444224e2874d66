"""Useful and lost training work from a job's progress lines (pure).

Per attempt (the ``attempt`` field of each line): the step it started from (its first line), the
last step it reached, and its *span*, the seconds from its first to its last ``step`` line, with
the samples processed in between. Work is *kept* when the job's final state builds on it: the
steps of an attempt beyond the earliest step any later attempt resumed from were computed again,
so they are *redone* (lost). With one requeue this is the last step the previous attempt reported
minus the step the next one resumed from. The *restart gap* before an attempt is the time from
the last step of the previous attempt to the first step of this one: stop-time checkpoint,
requeue, queue, start-up and checkpoint load. Throughput is samples per second of span; goodput
is throughput times the statistical efficiency the job reported (field ``efficiency`` or
``statistical_efficiency``), or the throughput itself when it reported none.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcsched.report.values import AttemptWork, JobWork

EFFICIENCY_FIELDS = ("efficiency", "statistical_efficiency")


@dataclass(frozen=True)
class _Span:
    attempt: int
    first_step: int
    last_step: int
    samples: int
    first_step_time: float
    last_step_time: float
    efficiency: float | None


def attempt_work(records: Sequence[Mapping[str, Any]]) -> tuple[AttemptWork, ...]:
    """One :class:`AttemptWork` per attempt that wrote progress lines, by attempt number."""
    spans = [_span(n, lines) for n, lines in sorted(_by_attempt(records).items())]
    out = []
    cutoff = math.inf  # the earliest step any later attempt resumed from
    for i in range(len(spans) - 1, -1, -1):
        s = spans[i]
        steps = max(0, s.last_step - s.first_step)
        kept = max(0, min(s.last_step, cutoff) - s.first_step) if steps else 0
        cutoff = min(cutoff, s.first_step)
        gap = max(0.0, s.first_step_time - spans[i - 1].last_step_time) if i > 0 else None
        span = max(0.0, s.last_step_time - s.first_step_time)
        out.append(AttemptWork(
            attempt=s.attempt, first_step=s.first_step, last_step=s.last_step, samples=s.samples, span=span,
            kept_steps=int(kept), redone_steps=steps - int(kept), restart_gap=gap,
            throughput=s.samples / span if span > 0 else None, efficiency=s.efficiency,
        ))
    return tuple(reversed(out))


def job_work(attempts: Sequence[AttemptWork], nodes: Mapping[int, int | None], total_steps: int | None) -> JobWork:
    """Totals over a job's attempts; ``nodes`` maps attempt numbers to their node counts."""
    span = sum(a.span for a in attempts)
    samples = sum(a.samples for a in attempts)
    throughput = samples / span if span > 0 else None
    goodput = None
    if throughput is not None:
        goodput = sum((a.goodput or 0.0) * a.span for a in attempts) / span
    reported = any(a.efficiency is not None for a in attempts)
    return JobWork(
        step=max((a.last_step for a in attempts), default=0),
        total_steps=total_steps,
        useful_steps=sum(a.kept_steps for a in attempts),
        redone_steps=sum(a.redone_steps for a in attempts),
        restart_seconds=sum(a.restart_gap or 0.0 for a in attempts),
        busy_node_hours=_node_hours(attempts, nodes, lambda a: a.span),
        useful_node_hours=_node_hours(attempts, nodes, useful_seconds),
        redone_node_hours=_node_hours(attempts, nodes, redone_seconds),
        throughput=throughput,
        goodput=goodput,
        efficiency=goodput / throughput if reported and goodput is not None and throughput else None,
    )


def useful_seconds(a: AttemptWork) -> float:
    return a.span * _share(a, a.kept_steps)


def redone_seconds(a: AttemptWork) -> float:
    return a.span * _share(a, a.redone_steps)


def _share(a: AttemptWork, steps: int) -> float:
    total = a.last_step - a.first_step
    return steps / total if total > 0 else 0.0


def _node_hours(attempts: Sequence[AttemptWork], nodes: Mapping[int, int | None],
                seconds: Callable[[AttemptWork], float]) -> float | None:
    """Node-hours of ``seconds(attempt)`` at each attempt's size; unknown if one size is."""
    total = 0.0
    for a in attempts:
        n = nodes.get(a.attempt)
        if n is None:
            return None
        total += n * seconds(a) / 3600.0
    return total


def total_steps(records: Sequence[Mapping[str, Any]]) -> int | None:
    for r in reversed(records):
        if isinstance(r.get("total_steps"), int):
            return int(r["total_steps"])
    return None


def _by_attempt(records: Sequence[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    out: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if isinstance(r.get("attempt"), int) and isinstance(r.get("step"), int):
            out[r["attempt"]].append(r)
    return out


def _span(attempt: int, lines: list[Mapping[str, Any]]) -> _Span:
    timed = [r for r in lines if r.get("event") == "step"] or lines
    first, last = timed[0], timed[-1]
    return _Span(
        attempt=attempt, first_step=int(lines[0]["step"]), last_step=max(int(r["step"]) for r in lines),
        samples=max(0, _int(last.get("samples")) - _int(first.get("samples"))),
        first_step_time=float(first["time"]), last_step_time=float(last["time"]),
        efficiency=_mean_efficiency(lines),
    )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0


def _mean_efficiency(lines: Sequence[Mapping[str, Any]]) -> float | None:
    values = []
    for r in lines:
        for name in EFFICIENCY_FIELDS:
            v = r.get(name)
            if isinstance(v, (int, float)) and math.isfinite(v) and v > 0:
                values.append(float(v))
                break
    return sum(values) / len(values) if values else None
