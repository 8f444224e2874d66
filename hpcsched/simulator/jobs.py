"""A job being replayed: where it is in its training, what it holds, and how fast it truly goes
(:class:`ReplayJob`, the truth, which only the engine touches), and what a scheduler may know of
it (:class:`JobView`, built by :mod:`.knowledge`, the only thing a policy is handed).

The truth the simulation advances is Pollux's: a job at global batch ``M`` on ``g`` GPUs makes
``M / step_time * efficiency(M)`` samples-at-``M0`` of progress per second, with the step time
from the application's fitted model and the efficiency from the gradient statistics recorded at
that batch size in the current epoch. Progress is integrated exactly between epoch boundaries
(where the statistics change and an adaptive job re-tunes its batch), so the completion time
within a scheduling interval is exact.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hpcsched.models.efficiency import GradientNoise, statistical_efficiency
from hpcsched.models.goodput import BatchConfig, BatchLimits, best_config
from hpcsched.models.throughput import Observation, ThroughputParams, predict_step_time

from .applications import Application
from .workload import JobSpec


@dataclass(frozen=True)
class Config:
    """How the job runs on its GPUs: per-GPU batch, extra accumulation steps, global batch."""

    local_bsz: int
    accum_steps: int
    global_bsz: int


class BatchRules(Protocol):
    """What :func:`fixed_config` needs of an application: its initial batch and batch limits."""

    @property
    def base_bsz(self) -> int: ...

    @property
    def limits(self) -> BatchLimits: ...


def fixed_config(app: BatchRules, gpus: int, batch_size: int) -> Config:
    """Pollux's rule for a job with a fixed global batch: split it over the GPUs, accumulate when
    a GPU cannot hold its share, and never exceed the application's largest batch."""
    batch = batch_size or app.base_bsz
    local = math.ceil(batch / gpus - 1e-8)
    accum = math.ceil(local / app.limits.max_local_bsz - 1e-8) - 1
    if gpus == 1 and batch > app.base_bsz:
        accum = max(1, accum)
    atomic = math.ceil(local / (accum + 1) - 1e-8)
    atomic = max(1, min(atomic, int(app.limits.max_global_bsz / (gpus * (accum + 1)))))
    return Config(atomic, accum, gpus * atomic * (accum + 1))


def bucket(noise: GradientNoise) -> GradientNoise:
    """Round the statistics to about 12% steps so configurations and goodput tables are shared
    between jobs and rounds (the estimates are no more precise than that)."""

    def q(x: float) -> float:
        return 0.0 if x <= 0.0 else float(10.0 ** (round(math.log10(x) * 20.0) / 20.0))

    return GradientNoise(grad_sqr=q(noise.grad_sqr), grad_var=q(noise.grad_var))


@functools.lru_cache(maxsize=1 << 16)
def _best(app: Application, noise: GradientNoise, nodes: int, gpus: int) -> BatchConfig:
    return best_config(app.params, noise, nodes, gpus, app.limits)


def adaptive_config(app: Application, noise: GradientNoise, nodes: int, gpus: int) -> Config:
    """The job-level scheduler's choice (:func:`hpcsched.models.best_config`) for this size."""
    chosen = _best(app, noise, nodes, gpus)
    return Config(chosen.local_bsz, chosen.accum_steps, chosen.global_bsz)


@functools.lru_cache(maxsize=1 << 18)
def true_rate(app: Application, params: ThroughputParams, nodes: int, gpus: int, config: Config, epoch: int) -> float:
    """Samples-at-M0 per second actually made (module docstring)."""
    step = float(predict_step_time(params, nodes, gpus, config.local_bsz, config.accum_steps))
    sqr, var = app.grad_stats(config.global_bsz, epoch)
    noise = GradientNoise.from_batch(sqr, var, app.base_bsz)
    return config.global_bsz / step * float(statistical_efficiency(noise, config.global_bsz, app.base_bsz))


@dataclass(frozen=True)
class Declared:
    """What a job declares about itself when submitted: its application's name, batch limits
    (initial batch ``M0`` to the largest) and the most GPUs it can use."""

    name: str
    limits: BatchLimits
    max_gpus: int

    @property
    def base_bsz(self) -> int:
        return self.limits.min_global_bsz


class _Placed:
    """A job's name and node count, from its spec, GPUs and GPUs per node."""

    spec: JobSpec
    gpus: int
    gpus_per_node: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def nodes(self) -> int:
        return -(-self.gpus // self.gpus_per_node)


@dataclass
class ReplayJob(_Placed):
    """Mutable replay state of one job, the truth included; only the engine touches it. Policies
    see a :class:`JobView` of it (:func:`hpcsched.simulator.knowledge.observe`)."""

    spec: JobSpec
    app: Application
    total_work: float
    gpus_per_node: int
    declared_work: float | None = None  # what the job's script declares (the policies' view), not the truth
    last_epoch: int = -1  # the epoch the job stops after (-1: its application's last; less: it stops early)
    work_done: float = 0.0
    epoch: int = 0
    gpus: int = 0
    config: Config | None = None
    pause_left: float = 0.0
    overlap_left: float = 0.0  # a make-before-break grow: seconds still training at the old size
    overlap_gpus: int = 0  # that old size
    overlap_config: Config | None = None  # and its configuration
    first_pause: float = 0.0
    completion: float | None = None
    starts: int = 0
    restarts: int = 0
    largest: int = 0
    state_since: float = 0.0
    size_since: float = 0.0
    executed_s: float = 0.0
    allocated_gpu_s: float = 0.0
    restart_gpu_s: float = 0.0
    contention: float = 0.0
    present_s: float = 0.0
    history: list[tuple[float, int]] = field(default_factory=list)
    observed: set[Observation] = field(default_factory=set)  # step times reported, one per configuration run
    noise_seen: GradientNoise | None = None  # the latest gradient noise the job reported
    fitted: tuple[ThroughputParams, frozenset[Observation]] | None = None  # the model fitted, and to what

    def __post_init__(self) -> None:
        if self.last_epoch < 0:
            self.last_epoch = len(self.app.epoch_ends) - 1

    @property
    def done(self) -> bool:
        return self.completion is not None

    @property
    def true_total(self) -> float:
        """The work the job really does before it stops (the oracle's remaining work)."""
        return self.epoch_end(self.last_epoch)

    def epoch_end(self, epoch: int) -> float:
        """Work at the end of ``epoch`` (in the job's own scale: Philly jobs have other totals)."""
        return float(self.app.epoch_ends[epoch]) * self.total_work / self.app.total_work

    def measured_noise(self) -> GradientNoise:
        """The statistics at the job's current batch in its current epoch (what it measures now)."""
        batch = self.config.global_bsz if self.config else self.app.base_bsz
        return bucket(self.app.noise(batch, self.epoch))

    def report(self) -> None:
        """The job trains at its configuration: it reports the step time and the gradient noise
        there, as the runtime library's progress lines do."""
        assert self.config is not None
        step = float(predict_step_time(self.app.params, self.nodes, self.gpus, self.config.local_bsz, self.config.accum_steps))
        self.observed.add(Observation(self.nodes, self.gpus, self.config.local_bsz, self.config.accum_steps, step_time=step))
        self.noise_seen = self.measured_noise()

    def probe(self) -> ReplayJob:
        """A copy to advance on trial: what it reports does not reach this job."""
        return dataclasses.replace(self, observed=set(self.observed), history=list(self.history))

    def rate(self) -> float:
        assert self.config is not None
        return true_rate(self.app, self.app.params, self.nodes, self.gpus, self.config, self.epoch)


@dataclass(frozen=True, eq=False)
class JobView(_Placed):
    """What a scheduler knows about one job at a decision; see :mod:`hpcsched.simulator.knowledge`.

    ``params`` and ``noise`` are the job's own fitted step-time model and latest gradient noise
    (the prior and :data:`hpcsched.models.NO_NOISE_DATA` before it reported any), ``declared_work``
    the total its script declares (None before it reported one, or when it declares none),
    ``work_done`` its reported progress (samples at ``M0``), ``largest`` the most GPUs it has run
    on. ``oracle`` views carry the truth instead (labelled upper bounds only).
    """

    spec: JobSpec
    app: Declared
    gpus_per_node: int
    gpus: int
    config: Config | None
    params: ThroughputParams
    noise: GradientNoise
    measured: bool
    work_done: float
    declared_work: float | None
    largest: int
    starts: int
    restarts: int
    state_since: float
    size_since: float
    executed_s: float
    time_limit: Callable[[int, Config], float]  # the time limit its user submits for a size: exact
    oracle: bool = False

    def measured_noise(self) -> GradientNoise:
        """``noise`` (the name the policies used before the information layer)."""
        return self.noise


#: The name policies have always given the jobs they are handed: now the view, never the truth.
SimJob = JobView
