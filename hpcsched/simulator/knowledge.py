"""The information layer: what a policy may know about each job, as a real scheduler would.

The truth stays with the engine (:class:`~.jobs.ReplayJob`: the application's true step-time
model, its gradient statistics in every future epoch, the work it really does). Every policy is
handed one :class:`~.jobs.JobView` per job, built by :func:`observe` from what the job has
reported, the way hpcsched's runtime library reports to its daemon:

* ``params``: the step-time model fitted online with the daemon's own fitting code
  (:func:`hpcsched.models.fit`) to one observation per configuration (nodes, GPUs, local batch,
  accumulation steps) the job has trained at. The observed step times are the truth's, without
  timing noise. It is refitted when a new configuration's step time is more than 5% off its
  prediction (:func:`fitted_params`; below the 8% by which the daemon's model misses a real
  configuration left out of its fit, docs/models.md). Before the first one the model is the
  fit's prior from one unit step at ``M0`` on one GPU, as the daemon's for a job that never ran
  (:mod:`hpcsched.daemon.rebalance_plan`): its speedups are the prior's, its time scale
  arbitrary, and a job that never ran reports no declared total, so its remaining work is the
  undeclared prior (half an hour on its minimum).
* ``noise``: the gradient noise the job last reported (at its batch, in its epoch), and
  :data:`hpcsched.models.NO_NOISE_DATA` before it reported any.
* ``declared_work``: the total its script declares (``trainer.epochs(n)``: target epochs times
  the dataset, in samples at ``M0``), reported once it runs; ``work_done`` its progress. So the
  remaining work a policy can know is ``declared_work - work_done``: no future statistical
  efficiency, no early stop. :class:`Information` makes declarations wrong or jobs stop early
  (robustness cases).
* ``largest``: the most GPUs it has trained on (Pollux's growth cap, :mod:`.policies.elastic`).
* ``time_limit(gpus, config)``: the time limit its user would submit for that size, taken exact.
  Slurm's backfill plans with time limits; an exact one flatters the Slurm baselines.

``observe(job, oracle=True)`` gives the truth instead (true model and statistics, the true
remaining work from the start); a policy gets that view only if it sets ``oracle = True``, and
such policies are named ``...-oracle``: labelled upper bounds, never a comparison's baseline.

What a policy implements is :class:`.policies.Policy`; :func:`adaptive_choice` is the job's own
batch choice (the runtime library's) on a size, from the view.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hpcsched.models import (
    DEFAULT_PRIOR,
    NO_NOISE_DATA,
    Observation,
    ThroughputParams,
    ThroughputPrior,
    fit,
    predict_step_time,
)
from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits, best_config

from .jobs import Config, Declared, JobView, ReplayJob
from .work import run_time

PRIOR_STEP_S = 1.0  # the prior's time scale: one unit step at M0 on one GPU
REFIT_TOLERANCE = 0.05  # refit when a new configuration's step time is this far off the model (fitted_params)


@dataclass(frozen=True)
class Information:
    """What jobs declare, against what they do (robustness cases; the defaults are exact).

    ``declared_scale``: every job declares ``declared_scale`` times the work it really does
    (1.5: 50% more, as a job that stops at its target accuracy before its declared epochs).
    ``early_stop``: each job stops, at an epoch's end, after a seeded uniform share in
    ``[1 - early_stop, 1]`` of its epochs, while it declares all of them.
    """

    declared_scale: float = 1.0
    early_stop: float = 0.0

    def __post_init__(self) -> None:
        if not self.declared_scale > 0.0:
            raise ValueError(f"declared_scale must be positive: {self.declared_scale}")
        if not 0.0 <= self.early_stop < 1.0:
            raise ValueError(f"early_stop must be in [0, 1): {self.early_stop}")

    @property
    def label(self) -> str:
        parts = [f"declared x{self.declared_scale:g}"] if self.declared_scale != 1.0 else []
        parts += [f"early stop {self.early_stop:.0%}"] if self.early_stop else []
        return ", ".join(parts) or "exact declarations"

    def apply(self, jobs: Sequence[ReplayJob], seed: int) -> None:
        """Set each job's declaration and stopping epoch (a seeded stream of its own, so the
        restart waits stay those of the same seed)."""
        rng = np.random.default_rng([seed, 16])
        for job in jobs:
            epochs = len(job.app.epoch_ends)
            share = rng.uniform(1.0 - self.early_stop, 1.0)
            job.last_epoch = max(0, min(epochs, int(np.ceil(share * epochs))) - 1) if self.early_stop else epochs - 1
            if job.declared_work is not None:
                job.declared_work *= self.declared_scale


EXACT = Information()


@functools.lru_cache(maxsize=1 << 14)
def _fit(observations: tuple[Observation, ...], prior: ThroughputPrior = DEFAULT_PRIOR) -> ThroughputParams:
    return fit(observations, prior)


def prior_params(base_bsz: int, prior: ThroughputPrior = DEFAULT_PRIOR) -> ThroughputParams:
    """The model of a job that has reported no step time: the fit's prior (module docstring)."""
    return _fit((Observation(1, 1, base_bsz, 0, step_time=PRIOR_STEP_S),), prior)


def _misses(params: ThroughputParams, observations: Iterable[Observation]) -> bool:
    """Whether ``params`` predict any of ``observations`` more than :data:`REFIT_TOLERANCE` off."""
    for o in observations:
        predicted = float(predict_step_time(params, o.num_nodes, o.num_replicas, o.local_bsz, o.accum_steps))
        if abs(predicted / o.step_time - 1.0) > REFIT_TOLERANCE:
            return True
    return False


def fitted_params(job: ReplayJob, prior: ThroughputPrior = DEFAULT_PRIOR) -> ThroughputParams:
    """The daemon's fit of the configurations ``job`` has run (its prior before any), with the
    policy's ``prior`` (the daemon's by default). The fit is redone when a configuration reported
    since the last one is predicted more than :data:`REFIT_TOLERANCE` off: refitting to a point
    the model already predicts changes it little, and fits are most of a simulation's time."""
    if not job.observed:
        return prior_params(job.app.base_bsz, prior)
    if job.fitted is None or _misses(job.fitted[0], job.observed - job.fitted[1]):
        key = sorted(job.observed, key=lambda o: (o.num_nodes, o.num_replicas, o.local_bsz, o.accum_steps))
        job.fitted = (_fit(tuple(key), prior), frozenset(job.observed))
    return job.fitted[0]


def declared(job: ReplayJob) -> Declared:
    return Declared(job.app.name, job.app.limits, job.app.max_gpus)


def _time_limit(job: ReplayJob) -> functools.partial[float]:
    epochs = job.last_epoch + 1
    return functools.partial(_exact_run_time, job, epochs)


def _exact_run_time(job: ReplayJob, epochs: int, gpus: int, config: Config) -> float:
    return run_time(job.app, job.gpus_per_node, gpus, config, epochs) * job.total_work / job.app.total_work


def observe(job: ReplayJob, oracle: bool = False, prior: ThroughputPrior = DEFAULT_PRIOR) -> JobView:
    """The view of ``job`` a policy gets (module docstring); ``oracle``: the truth; ``prior``:
    what the policy's fit assumes before the measurements say (Pollux's policies: Pollux's own)."""
    measured = bool(job.observed)
    total: float | None
    if oracle:
        params, noise, total = job.app.params, job.measured_noise(), job.true_total
    else:
        params = fitted_params(job, prior)
        noise, total = job.noise_seen or NO_NOISE_DATA, job.declared_work if measured else None
    return JobView(
        spec=job.spec,
        app=declared(job),
        gpus_per_node=job.gpus_per_node,
        gpus=job.gpus,
        config=job.config,
        params=params,
        noise=noise,
        measured=measured,
        work_done=job.work_done,
        declared_work=total,
        largest=max((o.num_replicas for o in job.observed), default=0),
        starts=job.starts,
        restarts=job.restarts,
        state_since=job.state_since,
        size_since=job.size_since,
        executed_s=job.executed_s,
        time_limit=_time_limit(job),
        oracle=oracle,
    )


@functools.lru_cache(maxsize=1 << 16)
def _best(params: ThroughputParams, noise: GradientNoise, nodes: int, gpus: int, limits: BatchLimits) -> Config:
    chosen = best_config(params, noise, nodes, gpus, limits)
    return Config(chosen.local_bsz, chosen.accum_steps, chosen.global_bsz)


def adaptive_choice(view: JobView, gpus: int) -> Config:
    """The batch configuration an adaptive job picks on ``gpus`` GPUs from what it knows:
    :func:`hpcsched.models.best_config` with its fitted model and measured noise."""
    return _best(view.params, view.noise, -(-gpus // view.gpus_per_node), gpus, view.app.limits)
