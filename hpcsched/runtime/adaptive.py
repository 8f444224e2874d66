"""Adaptive batch size, learning rate and gradient accumulation inside a training job (opt-in).

    trainer = ElasticTrainer(model, optimizer, adaptive=AdaptiveBatch(max_batch_size=1024))
    for epoch in trainer.epochs(20):
        for x, y in trainer.batches(train, batch_size=32):
            trainer.train_step(loss_fn(trainer.model(x), y))   # backward + optimizer step + bookkeeping

The job starts at the global batch ``M0 = batch_size * world size`` of its first attempt (the
batch its learning rate was tuned for) and, from the step times and the gradient noise it
measures, re-chooses (local batch, accumulation steps) for the highest goodput within the
limits: at every attempt (so after each resize), after ``first_adapt``, 2x and 4x ... that many
steps of the attempt (early, while the first measurements come in), and every ``adapt_every``
steps.
The decision is :func:`hpcsched.models.adapt.choose`; this module measures its inputs.

* Step times: the trainer times each step and :class:`StepTimes` keeps per-configuration sums,
  checkpointed, so a resized job predicts from everything it has measured so far.
* Gradient noise (:class:`NoiseProbe`): with several replicas, a DDP communication hook takes
  each replica's squared gradient norm before the all-reduce, and the norm of the averaged
  gradient after it gives the second batch size; one small all-reduce per step. A single replica
  uses its first accumulation micro-batch instead. Without accumulation it takes the gradients
  of two consecutive steps as two batches (``noise_probe="pairs"``, the default, as AdaptDL
  does: every ``measure_every``-th step keeps a copy of its gradient for the next one), or splits
  every ``measure_every``-th step in two micro-batches (``"split"``; such steps cost a second
  pass and are timed as their own configuration).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from hpcsched.models.adapt import LR_RULES, AdaptChoice, choose, lr_factor
from hpcsched.models.efficiency import (
    EFFICIENCY_FORMS,
    NoiseMeasurement,
    NoiseScaleEstimator,
    noise_from_consecutive_steps,
    noise_from_two_batch_sizes,
)
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.throughput import Observation
from hpcsched.runtime.distributed import Collectives
from hpcsched.runtime.progress import ProgressLog
from hpcsched.runtime.sampler import MicroBatch
from hpcsched.runtime.snapshot import DataPosition

STATE_KEY = "hpcsched.adaptive"
NOISE_PROBES = ("pairs", "split")


@dataclass(frozen=True)
class AdaptiveBatch:
    """What the user allows an adaptive job to do.

    ``max_batch_size``: the largest global batch (samples per optimizer step) the training
    tolerates; ``max_local_batch``: the most samples one process fits per micro-step (default:
    no limit beyond ``max_batch_size``); ``max_accum_steps``: extra micro-steps of gradient
    accumulation per optimizer step; ``lr_scaling``: "sqrt" (Adam and other adaptive optimisers),
    "adascale" (SGD) or "none" (the script scales the learning rate itself); ``max_growth``: the
    largest global batch a decision may pick is this many times the largest one measured so far
    (0: no such cap), so the step-time fit is not trusted far beyond what was measured;
    ``efficiency``: the form of statistical efficiency the choice weighs batches by, "sgd"
    (Pollux's, the default) or "sqrt" (its square root, for Adam with square-root learning-rate
    scaling: :func:`hpcsched.models.efficiency.statistical_efficiency`); ``noise_probe``: how a
    single replica without accumulation measures gradient noise, "pairs" (two consecutive steps'
    gradients: no extra pass, one copy of the gradients in memory; the optimizer's step between
    them counts as noise, so it measures high) or "split" (a step in two halves: unbiased, but
    such a step costs a second pass).
    """

    max_batch_size: int
    max_local_batch: int | None = None
    max_accum_steps: int = 4
    lr_scaling: str = "sqrt"
    adapt_every: int = 50
    first_adapt: int = 10
    measure_every: int = 4
    min_timed_steps: int = 3
    max_growth: float = 2.0
    efficiency: str = "sgd"
    noise_probe: str = "pairs"

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or (self.max_local_batch is not None and self.max_local_batch < 1):
            raise ValueError(f"max_batch_size and max_local_batch must be 1 or more: {self}")
        if self.max_accum_steps < 0 or min(self.adapt_every, self.first_adapt, self.min_timed_steps) < 1:
            raise ValueError(f"need max_accum_steps >= 0, adapt_every, first_adapt, min_timed_steps >= 1: {self}")
        if self.measure_every < 0:
            raise ValueError(f"need measure_every >= 0: {self}")
        if self.max_growth != 0 and not self.max_growth >= 1:
            raise ValueError(f"max_growth must be 0 (no cap) or 1 or more: {self}")
        if self.lr_scaling not in LR_RULES:
            raise ValueError(f"lr_scaling {self.lr_scaling!r} is not one of {', '.join(LR_RULES)}")
        if self.efficiency not in EFFICIENCY_FORMS:
            raise ValueError(f"efficiency {self.efficiency!r} is not one of {', '.join(EFFICIENCY_FORMS)}")
        if self.noise_probe not in NOISE_PROBES:
            raise ValueError(f"noise_probe {self.noise_probe!r} is not one of {', '.join(NOISE_PROBES)}")

    @property
    def split_every(self) -> int:
        """How often a single replica without accumulation splits a step in two (0: never)."""
        return self.measure_every if self.noise_probe == "split" else 0


Key = tuple[int, int, int, int]  # nodes, replicas, local batch, accumulation steps


class StepTimes:
    """Sum of timed seconds and count of timed steps per configuration."""

    def __init__(self) -> None:
        self.totals: dict[Key, list[float]] = {}

    def add(self, key: Key, seconds: float) -> None:
        total = self.totals.setdefault(key, [0.0, 0.0])
        total[0] += seconds
        total[1] += 1

    def observations(self, min_steps: int) -> list[Observation]:
        return [
            Observation(num_nodes=n, num_replicas=r, local_bsz=b, accum_steps=a, step_time=seconds / steps)
            for (n, r, b, a), (seconds, steps) in sorted(self.totals.items())
            if steps >= min_steps
        ]

    def as_rows(self) -> list[list[float]]:
        return [[*key, seconds, steps] for key, (seconds, steps) in sorted(self.totals.items())]

    def load_rows(self, rows: Iterable[list[float]]) -> None:
        self.totals = {(int(r[0]), int(r[1]), int(r[2]), int(r[3])): [float(r[4]), float(r[5])] for r in rows}


def squared_norm(parameters: Iterable[nn.Parameter]) -> float:
    """Sum of squares of all gradients, in float64."""
    return _device_sum(p.grad.detach().double().pow(2).sum() for p in parameters if p.grad is not None)


def _device_sum(parts: Iterable[torch.Tensor]) -> float:
    """The sum of scalar tensors, read back once per device (not once per tensor: each read of
    an accelerator's value waits for it)."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for part in parts:
        by_device.setdefault(part.device, []).append(part)
    return sum(float(torch.stack(group).sum()) for group in by_device.values())


class NoiseProbe:
    """Squared gradient norms of one optimizer step at two batch sizes (module docstring).

    ``pairs_every``: a single replica without accumulation keeps the gradient of every such
    step (0: never) and measures with the next step's.
    """

    def __init__(self, model: nn.Module, world_size: int, pairs_every: int = 0) -> None:
        self.world_size, self.pairs_every = world_size, pairs_every
        self.local_sqr = 0.0
        self.small_sqr: float | None = None
        self.small_bsz = 0
        self.kept: tuple[int, int, float, list[torch.Tensor | None]] | None = None  # step, batch, |g|^2, g
        self.hooked = False
        if world_size > 1 and isinstance(model, DistributedDataParallel):
            try:
                model.register_comm_hook(self, _noise_hook)
                self.hooked = True
            except RuntimeError as error:  # the script registered its own hook
                print(f"hpcsched: gradient noise not measured ({error})", file=sys.stderr)

    def after_backward(self, micro: MicroBatch, parameters: list[nn.Parameter]) -> None:
        """After the first micro-batch of a single replica: the gradient of ``micro.size`` samples."""
        if self.world_size == 1 and micro.index == 0 and micro.count >= 2:
            weight = micro.size / micro.share
            self.small_sqr, self.small_bsz = squared_norm(parameters) / weight**2, micro.size

    def measure(self, micro: MicroBatch, parameters: list[nn.Parameter], collectives: Collectives) -> NoiseMeasurement | None:
        """At the end of a step, after the optimizer's gradients are final (all ranks call this).
        The gradients are read only on steps that measure."""
        measurement = None
        if self.hooked:
            local_sum, reported = collectives.sum_floats([self.local_sqr, 1.0 if self.local_sqr > 0.0 else 0.0])
            share = (micro.end - micro.begin) / self.world_size
            if reported == self.world_size and share > 0:
                total_sqr = squared_norm(parameters)
                measurement = noise_from_two_batch_sizes(local_sum / reported, share, total_sqr, micro.end - micro.begin)
        elif self.small_sqr is not None and self.small_bsz < micro.share:
            measurement = noise_from_two_batch_sizes(self.small_sqr, self.small_bsz, squared_norm(parameters), micro.share)
        elif self.world_size == 1 and micro.count == 1 and self.pairs_every:
            measurement = self._pair(micro, parameters)
        self.local_sqr, self.small_sqr = 0.0, None
        return measurement

    def _pair(self, micro: MicroBatch, parameters: list[nn.Parameter]) -> NoiseMeasurement | None:
        """The second step of a pair measures with the first one's gradient; a step due keeps its own."""
        kept, self.kept = self.kept, None
        if kept is not None and kept[0] == micro.step - 1 and kept[1] == micro.share:
            both = [(p.grad, g) for p, g in zip(parameters, kept[3], strict=True) if p.grad is not None and g is not None]
            dot = _device_sum(now.detach().double().mul(before.double()).sum() for now, before in both)
            return noise_from_consecutive_steps(kept[2], squared_norm(parameters), dot, micro.share)
        if micro.step % self.pairs_every == 0:
            grads = [None if p.grad is None else p.grad.detach().clone() for p in parameters]
            self.kept = (micro.step, micro.share, squared_norm(parameters), grads)
        return None


def step_at_scaled_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """``optimizer.step()`` with every learning rate times ``factor``, restored afterwards so
    that a learning-rate scheduler keeps working on the unscaled values."""
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor
    try:
        optimizer.step()
    finally:
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr


# torch checks a hook's annotations against its own classes, which postponed (string)
# annotations fail; so this one has none.
def _noise_hook(state, bucket):  # type: ignore[no-untyped-def]
    """DDP's default all-reduce, after adding this replica's squared gradient norm to the probe."""
    state.local_sqr += float(bucket.buffer().detach().double().pow(2).sum())
    return allreduce_hook(None, bucket)  # type: ignore[arg-type]  # None: the default group


class AdaptiveRun:
    """The adaptive state of one job: base batch, step times, noise, current configuration.

    It is checkpointed with the job (``state_dict``), so it outlives resizes and requeues.
    """

    def __init__(self, options: AdaptiveBatch, *, nodes: int, world_size: int, rank: int) -> None:
        self.options, self.nodes, self.world_size, self.rank = options, nodes, world_size, rank
        self.base_batch: int | None = None
        self.times = StepTimes()
        self.noise = NoiseScaleEstimator()
        self.config: tuple[int, int] | None = None  # (local batch, accumulation steps) now
        self.choice: AdaptChoice | None = None
        self.steps_here = 0  # optimizer steps in this attempt

    def due(self, step: int) -> bool:
        """Whether to re-choose after global step ``step`` (every rank gets the same answer)."""
        early, first = self.steps_here, self.options.first_adapt
        doubling = early >= first and early % first == 0 and (early // first) & (early // first - 1) == 0
        return step % self.options.adapt_every == 0 or (doubling and early < self.options.adapt_every)

    def state_dict(self) -> dict[str, Any]:
        return {
            "base_batch": self.base_batch,
            "times": self.times.as_rows(),
            "noise": [self.noise.sqr_average, self.noise.var_average, self.noise.weight],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_batch = state.get("base_batch")
        self.times.load_rows(state.get("times") or [])
        sqr, var, weight = state.get("noise") or [0.0, 0.0, 0.0]
        self.noise = NoiseScaleEstimator(smoothing=self.noise.smoothing, sqr_average=sqr, var_average=var, weight=weight)

    def limits(self) -> BatchLimits:
        base = self.base_batch or 1
        top = max(self.options.max_batch_size, base)
        measured = [replicas * local * (accum + 1) for _, replicas, local, accum in self.times.totals]
        if self.options.max_growth and measured:
            top = min(top, max(base, int(self.options.max_growth * max(measured))))
        local = self.options.max_local_batch or top
        return BatchLimits(min_global_bsz=base, max_global_bsz=top, max_local_bsz=local,
                           max_accum_steps=self.options.max_accum_steps)  # fmt: skip

    def decide(self, collectives: Collectives) -> bool:
        """Rank 0 chooses, every rank adopts; returns whether the configuration changed."""
        choice = None
        if self.rank == 0:
            try:
                choice = choose(
                    self.times.observations(self.options.min_timed_steps), self.noise.estimate,
                    num_nodes=self.nodes, num_replicas=self.world_size, limits=self.limits(),
                    lr_rule=self.options.lr_scaling, current=self.config, efficiency=self.options.efficiency,
                )  # fmt: skip
            except ValueError as error:
                print(f"hpcsched: batch size not adapted: {error}", file=sys.stderr, flush=True)
        proposal = [choice.local_bsz, choice.accum_steps] if choice else list(self.config or (0, 0))
        local, accum = collectives.broadcast_ints(proposal)
        if local < 1:  # nothing chosen and nothing to keep: the first attempt's configuration
            local, accum = -(-(self.base_batch or 1) // self.world_size), 0
        changed = (local, accum) != self.config
        self.config, self.choice = (local, accum), choice
        return changed

    def key(self, micro: MicroBatch) -> Key | None:
        """The configuration a step ran at, or None if it was irregular (an epoch's short tail)."""
        assert self.config is not None
        local, accum = self.config
        if micro.end - micro.begin != local * self.world_size * (accum + 1):
            return None
        if micro.count == accum + 1:
            return self.nodes, self.world_size, local, accum
        if accum == 0 and micro.count == 2:  # a measurement step split in two
            return self.nodes, self.world_size, -(-local // 2), 1
        return None

    def record(self, micro: MicroBatch, seconds: float | None, measurement: NoiseMeasurement | None) -> None:
        self.steps_here += 1
        key = self.key(micro)
        if seconds is not None and key is not None and math.isfinite(seconds) and seconds > 0.0:
            self.times.add(key, seconds)
        if measurement is not None:
            self.noise = self.noise.update(measurement)

    def lr_factor(self) -> float:
        assert self.config is not None and self.base_batch is not None
        local, accum = self.config
        return lr_factor(self.options.lr_scaling, self.noise.estimate, self.world_size * local * (accum + 1), self.base_batch)

    def log_change(self, progress: ProgressLog, position: DataPosition, *, first: bool) -> None:
        """Rank 0: end the old configuration's line, then an "adapt" line and a log line."""
        assert self.config is not None
        local, accum = self.config
        p, choice = position, self.choice
        if not first:  # the steps so far belong to the old configuration's line
            progress.event("step", step=p.step, epoch=p.epoch, samples=p.samples)
        progress.global_batch = local * self.world_size * (accum + 1)
        progress.fields.update(local_batch=local, accum_steps=accum, **self.fields())
        reason = choice.reason if choice else "initial"
        predicted = choice.predicted_step_time if choice else None
        progress.event("adapt", step=p.step, epoch=p.epoch, samples=p.samples, reason=reason, predicted_step_time=predicted)
        print(f"hpcsched: batch {progress.global_batch} = {self.world_size} x {local} x {accum + 1} ({reason}), "
              f"learning rate x{self.lr_factor():.3g}", flush=True)  # fmt: skip

    def fields(self) -> dict[str, Any]:
        """What every progress line of an adaptive job says about its configuration."""
        noise = self.noise.estimate
        measured = self.noise.weight > 0.0
        return {
            "adaptive": True,
            "base_batch": self.base_batch,
            "max_batch": self.options.max_batch_size,
            "max_local_batch": self.options.max_local_batch,
            "max_accum_steps": self.options.max_accum_steps,
            "grad_sqr": noise.grad_sqr if measured else None,
            "grad_var": noise.grad_var if measured else None,
            "lr_factor": self.lr_factor() if self.config and self.base_batch else None,
        }
