"""The six applications of the Pollux simulator: fitted step-time model, dataset progress, and
gradient statistics over training, read from its recorded profiles.

Where the numbers come from (``traces/<name>/`` in the Pollux data, see its README):

* step time: ``placements.csv`` and ``scalability.csv`` fitted with :func:`hpcsched.models.fit`
  and a prior of its own (:data:`TRUTH_PRIOR`, not the daemon's tunable default).
  The fitted model is the simulator's ground truth *and* what the policies are told (an oracle
  model, as if every job had been profiled before); Pollux interpolates the measured rows instead
  and lets its policy learn (docs/simulator.md discusses the difference).
* work: ``validation-<B>.csv`` record, per epoch, the cumulative progress in steps at the initial
  (smallest recorded) batch size ``M0``. As in Pollux, epoch ``e`` ends at the smallest progress
  any batch size recorded for it, and a job is done at the end of its target epoch (bert 2,
  cifar10 100, ncf 10, imagenet 90, deepspeech2 80, yolov3 50). Work is counted in samples at
  ``M0``: ``progress * M0``, the unit of :func:`hpcsched.models.max_goodput`.
* declared work: the total a job's script declares with ``trainer.epochs(target)``, the target
  epochs at the ``M0`` curve's progress per epoch (its progress at the target epoch, times
  ``M0``). The job stops at the target (the end of the target epoch as above), which the minimum
  over batch sizes puts at or slightly below the declared total.
* gradient statistics: ``grad_sqr`` and ``grad_var`` (the variance at ``M0``) per epoch and
  recorded batch size, interpolated linearly in the batch size like Pollux does (and clamped to
  the recorded range).
* batch limits: ``M0`` and the largest recorded batch bound the global batch, the largest
  profiled local batch bounds a GPU (yolov3: 8, as in Pollux).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.profiles import observations_from_placements, observations_from_scalability
from hpcsched.models.throughput import ThroughputParams
from hpcsched.models.throughput_fit import ThroughputPrior, fit

FloatArray = npt.NDArray[np.float64]

TARGET_EPOCHS: Mapping[str, int] = {"bert": 2, "cifar10": 100, "ncf": 10, "imagenet": 90, "deepspeech2": 80, "yolov3": 50}
MAX_LOCAL_BSZ: Mapping[str, int] = {"yolov3": 8}
# Pollux's simulator never gives ncf more than one GPU (its goodput model does not fit ncf).
MAX_GPUS: Mapping[str, int] = {"ncf": 1}
MAX_ACCUM_STEPS = 15
# The prior of the ground truth's fit, where the profiles leave a constant open. Fixed here, so that
# tuning the daemon's default prior (DEFAULT_PRIOR) never moves the simulated world; these are the
# values of that default when they were fixed, which every published result was run with.
TRUTH_PRIOR = ThroughputPrior(compute_overhead=0.35, alpha_r=0.1, beta_r=0.02, alpha_n=0.5, beta_n=0.02)


@dataclass(frozen=True, eq=False)
class Application:
    """One application's models and training curve (see the module docstring)."""

    name: str
    params: ThroughputParams
    limits: BatchLimits
    epoch_ends: FloatArray  # cumulative work (samples at M0) at the end of each epoch
    grad_batch_sizes: FloatArray  # recorded global batch sizes, ascending
    grad_sqr: FloatArray  # [batch size, epoch]
    grad_var: FloatArray  # [batch size, epoch], variance of the mean gradient at M0
    max_gpus: int = 1 << 30
    declared_work: float | None = None  # the total a job's script declares; None: it declares none
    extra: Mapping[str, float] = field(default_factory=dict)

    @property
    def base_bsz(self) -> int:
        return self.limits.min_global_bsz

    @property
    def total_work(self) -> float:
        return float(self.epoch_ends[-1])

    def epoch_at(self, work_done: float) -> int:
        """Index of the epoch the job is in after ``work_done`` (clamped to the last one)."""
        return min(int(np.searchsorted(self.epoch_ends, work_done, side="right")), len(self.epoch_ends) - 1)

    def grad_stats(self, batch_size: float, epoch: int) -> tuple[float, float]:
        """(grad_sqr, grad_var at M0) at ``batch_size`` during ``epoch``."""
        sizes = self.grad_batch_sizes
        b = min(max(batch_size, sizes[0]), sizes[-1])
        return (
            float(np.interp(b, sizes, self.grad_sqr[:, epoch])),
            float(np.interp(b, sizes, self.grad_var[:, epoch])),
        )

    def noise(self, batch_size: float, epoch: int) -> GradientNoise:
        sqr, var = self.grad_stats(batch_size, epoch)
        return GradientNoise.from_batch(sqr, var, self.base_bsz)


def _read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def load_application(directory: Path, epochs: int | None = None) -> Application:
    """Read and fit ``directory`` (one ``traces/<name>/`` folder)."""
    name = directory.name
    epochs = epochs or TARGET_EPOCHS.get(name)
    placements = (directory / "placements.csv").read_text()
    observations = observations_from_placements(placements)
    scalability = directory / "scalability.csv"
    if scalability.exists():
        observations += observations_from_scalability(scalability.read_text())
    curves = {int(p.stem.rsplit("-", 1)[1]): _read_csv(p) for p in directory.glob("validation-*.csv")}
    if not curves:
        raise ValueError(f"{directory}: no validation-<batch>.csv files")
    sizes = sorted(curves)
    epochs = epochs or min(len(rows) for rows in curves.values())
    if any(len(curves[b]) < epochs for b in sizes):
        raise ValueError(f"{directory}: fewer than {epochs} epochs recorded")
    base = sizes[0]
    ends = np.array([min(float(curves[b][e]["progress"]) for b in sizes) for e in range(epochs)]) * base
    declared = float(curves[base][epochs - 1]["progress"]) * base

    def table(column: str) -> FloatArray:
        return np.array([[max(float(curves[b][e][column]), 0.0) for e in range(epochs)] for b in sizes])

    max_local = MAX_LOCAL_BSZ.get(name, max(o.local_bsz for o in observations))
    accum = min(MAX_ACCUM_STEPS, max(0, math.ceil(sizes[-1] / max_local) - 1))
    return Application(
        name=name,
        params=fit(observations, TRUTH_PRIOR),
        limits=BatchLimits(min_global_bsz=base, max_global_bsz=sizes[-1], max_local_bsz=max_local, max_accum_steps=accum),
        epoch_ends=ends,
        grad_batch_sizes=np.array(sizes, np.float64),
        grad_sqr=table("grad_sqr"),
        grad_var=table("grad_var"),
        max_gpus=MAX_GPUS.get(name, 1 << 30),
        declared_work=declared,
    )


def load_applications(traces: Path) -> dict[str, Application]:
    """Every application under ``traces`` (a folder with ``placements.csv``); the six of the
    study train for their target epochs, any other for all the epochs it recorded."""
    folders = sorted(p.parent for p in traces.glob("*/placements.csv"))
    return {folder.name: load_application(folder) for folder in folders}
