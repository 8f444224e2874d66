"""What a job measured about itself, read from the runtime library's progress lines (pure).

Every progress line describes the batch configuration the job runs with (nodes, ranks, samples
per rank per micro-step, extra accumulation micro-steps); a "step" line adds the mean time of the
steps since the previous line, which the runtime flushes before it switches configuration, so
each step time belongs to exactly the configuration on its line. The runtime leaves out of a step
time what the training thread waited for a CPU that other processes held and reports that wait
as ``cpu_wait`` (docs/adaptive.md), so the step times of a job that ran beside others describe
nodes of its own; the daemon fits exactly those. Lines also carry the smoothed
gradient-noise estimate and, for adaptive jobs, the batch limits. This module turns them into
the inputs of :mod:`hpcsched.models`: one :class:`~hpcsched.models.Observation` per distinct
configuration, the latest :class:`~hpcsched.models.GradientNoise`, and
:class:`~hpcsched.models.BatchLimits`. ``hpcsched model`` and the rebalance pass both read jobs
through it, so the two always agree on what a job measured.

Older progress files lack the newer fields: a missing ``nodes`` is the attempt's node count when
the caller knows it, else 1; ``accum_steps`` is 0; ``local_batch`` is the global batch over the
ranks; ``timed_steps`` is the step difference to the attempt's previous line. A line with an
impossible value is left out and named in :attr:`Measurements.problems`, never fatal: progress
is advisory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.throughput import Observation


@dataclass(frozen=True, order=True)
class Configuration:
    """How one optimizer step is split: ``num_replicas`` ranks on ``num_nodes`` nodes, each
    processing ``local_bsz`` samples per micro-step, ``accum_steps`` extra micro-steps per step."""

    num_nodes: int
    num_replicas: int
    local_bsz: int
    accum_steps: int

    @property
    def global_bsz(self) -> int:
        return self.num_replicas * self.local_bsz * (self.accum_steps + 1)

    @property
    def procs_per_node(self) -> int:
        return max(1, self.num_replicas // self.num_nodes)

    def per_node(self) -> Configuration:
        """The same step with each node as one replica, the allocator's unit on the real cluster
        (Slurm jobs own whole nodes): a node's ranks together form one larger local batch."""
        local = max(1, self.global_bsz // (self.num_nodes * (self.accum_steps + 1)))
        return Configuration(self.num_nodes, self.num_nodes, local, self.accum_steps)


@dataclass(frozen=True)
class MeasuredStepTime:
    """The mean step time of one configuration, weighted by the steps each line timed;
    ``cpu_wait``: the mean wait for a CPU per timed step, left out of ``step_time`` (0 for lines
    that do not report it)."""

    config: Configuration
    step_time: float
    timed_steps: int
    cpu_wait: float = 0.0

    def observation(self) -> Observation:
        c = self.config
        return Observation(
            num_nodes=c.num_nodes,
            num_replicas=c.num_replicas,
            local_bsz=c.local_bsz,
            accum_steps=c.accum_steps,
            step_time=self.step_time,
        )


@dataclass(frozen=True)
class Measurements:
    """Everything the progress lines say about a job's speed and batch size.

    ``current`` is the configuration of the newest line that names one; ``limits`` is None
    exactly when ``current`` is. ``noise`` is None until the job reports a gradient-noise
    estimate. ``problems`` names the lines that were left out and why.
    """

    step_times: tuple[MeasuredStepTime, ...]
    current: Configuration | None
    noise: GradientNoise | None
    limits: BatchLimits | None
    adaptive: bool
    problems: tuple[str, ...] = ()

    def observations(self) -> list[Observation]:
        return [m.observation() for m in self.step_times]

    @property
    def timed_steps(self) -> int:
        return sum(m.timed_steps for m in self.step_times)

    @property
    def cpu_wait_share(self) -> float:
        """The share of the timed steps' wall time spent waiting for a CPU other processes held."""
        waited = sum(m.cpu_wait * m.timed_steps for m in self.step_times)
        busy = sum(m.step_time * m.timed_steps for m in self.step_times)
        return waited / (waited + busy) if waited > 0.0 else 0.0

    def per_node(self) -> Measurements:
        """The same measurements with each node as one replica (:meth:`Configuration.per_node`)."""
        if self.current is None or self.limits is None:
            return self
        per_node = self.current.procs_per_node
        limits = replace(self.limits, max_local_bsz=self.limits.max_local_bsz * per_node)
        return replace(
            self,
            step_times=tuple(replace(m, config=m.config.per_node()) for m in self.step_times),
            current=self.current.per_node(),
            limits=limits,
        )


def measure(records: Iterable[Mapping[str, Any]], nodes_by_attempt: Mapping[int, int] | None = None) -> Measurements:
    """Read a job's progress lines, oldest first. ``nodes_by_attempt`` (attempt number -> node
    count, from the driver's attempt records) fills in ``nodes`` for lines written before the
    runtime reported it."""
    lines = list(records)
    problems = _Problems()
    step_times, current, seen = _step_times(lines, nodes_by_attempt or {}, problems)
    adaptive = _latest(lines, "adaptive") is True
    return Measurements(
        step_times=step_times,
        current=current,
        noise=_noise(lines, problems),
        limits=None if current is None else _limits(lines, current, seen, adaptive, problems),
        adaptive=adaptive,
        problems=problems.messages(),
    )


def _step_times(
    lines: Sequence[Mapping[str, Any]], nodes_by_attempt: Mapping[int, int], problems: _Problems
) -> tuple[tuple[MeasuredStepTime, ...], Configuration | None, set[Configuration]]:
    """Per configuration the timed-step-weighted mean step time of its "step" lines; the newest
    configuration; every configuration seen."""
    sums: dict[Configuration, tuple[float, int, float]] = {}
    seen: set[Configuration] = set()
    current: Configuration | None = None
    previous_step: dict[Any, int] = {}
    for record in lines:
        attempt = record.get("attempt")
        try:
            config = configuration(record, nodes_by_attempt.get(attempt) if isinstance(attempt, int) else None)
            timed = _timed_steps(record, previous_step.get(attempt))
            previous_step[attempt] = _int_field(record, "step", 0) or 0
        except ValueError as error:
            problems.add(str(error), record)
            continue
        if config is None:
            continue
        current = config
        seen.add(config)
        step_time = _finite(record.get("step_time"))
        if record.get("event") == "step" and step_time is not None and step_time > 0 and timed > 0:
            total, weight, waited = sums.get(config, (0.0, 0, 0.0))
            wait = max(0.0, _finite(record.get("cpu_wait")) or 0.0)
            sums[config] = (total + step_time * timed, weight + timed, waited + wait * timed)
    measured = tuple(MeasuredStepTime(c, t / n, n, w / n) for c, (t, n, w) in sorted(sums.items()))
    return measured, current, seen


def configuration(record: Mapping[str, Any], attempt_nodes: int | None = None) -> Configuration | None:
    """The configuration one progress line describes; None when it names no global batch yet.
    Raises ``ValueError`` naming the field when a value is impossible."""
    global_bsz = _int_field(record, "global_batch", 1)
    if global_bsz is None:
        return None
    world = _int_field(record, "world_size", 1)
    nodes = _int_field(record, "nodes", 1)
    if nodes is None:  # an older line: the attempt's node count, which cannot exceed its ranks
        nodes = min(attempt_nodes or 1, world) if world else attempt_nodes or 1
    world = world or nodes
    if nodes > world:
        raise ValueError(f"nodes={nodes} is more than world_size={world}")
    accum = _int_field(record, "accum_steps", 0) or 0
    local = _int_field(record, "local_batch", 1) or max(1, global_bsz // (world * (accum + 1)))
    return Configuration(nodes, world, local, accum)


def _timed_steps(record: Mapping[str, Any], previous_step: int | None) -> int:
    """Steps the line's ``step_time`` averages over: ``timed_steps`` when reported, else the
    steps since the attempt's previous line (1 when there is none to compare with)."""
    reported = _int_field(record, "timed_steps", 0)
    if reported is not None:
        return reported
    step = _int_field(record, "step", 0)
    if step is not None and previous_step is not None and step > previous_step:
        return step - previous_step
    return 1


def _noise(lines: Sequence[Mapping[str, Any]], problems: _Problems) -> GradientNoise | None:
    """The newest noise estimate (both terms reported); None when there is none or it is all 0.
    Small negative values are estimator noise and are clipped, as the estimator does itself."""
    for record in reversed(lines):
        raw_sqr, raw_var = record.get("grad_sqr"), record.get("grad_var")
        if raw_sqr is None or raw_var is None:
            continue
        sqr, var = _finite(raw_sqr), _finite(raw_var)
        if sqr is None or var is None:
            problems.add(f"grad_sqr={raw_sqr!r}, grad_var={raw_var!r} are not finite numbers", record)
            continue
        noise = GradientNoise(grad_sqr=max(sqr, 0.0), grad_var=max(var, 0.0))
        return noise if noise.grad_sqr or noise.grad_var else None
    return None


def _limits(
    lines: Sequence[Mapping[str, Any]], current: Configuration, seen: Iterable[Configuration], adaptive: bool, problems: _Problems
) -> BatchLimits:
    """The batch sizes the job allows. A fixed-batch job allows only its current global batch;
    an adaptive one ``base_batch`` (M0) to ``max_batch``, at most ``max_local_batch`` per rank
    and ``max_accum_steps`` (each never below what it was seen running with)."""
    base = most = current.global_bsz
    if adaptive:
        base = _limit(lines, "base_batch", problems) or base
        most = _limit(lines, "max_batch", problems) or base
        if most < base:
            problems.add(f"max_batch={most} is below base_batch={base}; the batch is held at base_batch")
            most = base
    max_local = _limit(lines, "max_local_batch", problems) or most
    max_accum = _limit(lines, "max_accum_steps", problems, minimum=0) or 0
    return BatchLimits(
        min_global_bsz=base,
        max_global_bsz=most,
        max_local_bsz=max(max_local, *(c.local_bsz for c in seen)),
        max_accum_steps=max(max_accum, *(c.accum_steps for c in seen)),
    )


def _limit(lines: Sequence[Mapping[str, Any]], name: str, problems: _Problems, minimum: int = 1) -> int | None:
    """The newest non-null value of an integer field; a bad one is named and ignored."""
    for record in reversed(lines):
        try:
            value = _int_field(record, name, minimum)
        except ValueError as error:
            problems.add(str(error), record)
            continue
        if value is not None:
            return value
    return None


def _latest(lines: Sequence[Mapping[str, Any]], name: str) -> Any:
    return next((r[name] for r in reversed(lines) if r.get(name) is not None), None)


def _int_field(record: Mapping[str, Any], name: str, minimum: int) -> int | None:
    """The field as an integer >= ``minimum``; None when absent or null; ``ValueError`` naming
    the field when it is anything else."""
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is not an integer >= {minimum}")
    return value


def _finite(value: Any) -> float | None:
    """The value when it is a finite JSON number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class _Problems:
    """Bad values, counted per message so that one bad field on every line is reported once."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, str]] = {}

    def add(self, message: str, record: Mapping[str, Any] | None = None) -> None:
        """Note a problem, of a line when ``record`` is given, else of the job as a whole."""
        where = "" if record is None else f"attempt {record.get('attempt')} step {record.get('step')}"
        count, first = self._seen.get(message, (0, where))
        self._seen[message] = (count + 1, first)

    def messages(self) -> tuple[str, ...]:
        return tuple(
            f"{message} ({count} line{'s' if count > 1 else ''}, first at {first})" if first else message
            for message, (count, first) in self._seen.items()
        )
