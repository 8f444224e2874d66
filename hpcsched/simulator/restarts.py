"""What a change of allocation costs a simulated job, and what the policies are told it costs.

Two models:

* ``fixed``: every (re)allocation, the first start included, pauses the job ``seconds`` (Pollux's
  simulator: 30 s). The policies are told exactly that.
* ``slurm``: a resize is a trip through Slurm. Numbers (docs/simulator.md): writing the
  checkpoint 10 s; container plus ``torchrun`` start and checkpoint load 5 s (rootless Podman
  with overlay storage started in about 2 s on the development machines); and for a new or larger
  allocation a wait in the queue, exponentially distributed with mean ``30 s / (1 - load)``
  (``load`` capped at 0.95, so at most 600 s): 30 s on an idle cluster (scheduler cycle and
  prolog), 60 s at half load, 300 s at 90%. ``load`` is the number of jobs present over the
  number of GPUs, the share of the cluster their minimums need: a measure of contention that does
  not depend on the policy (elastic policies keep every GPU allocated, so the allocated share
  would say nothing). Shrinking keeps the allocation (``scontrol update NumNodes=``) and skips
  the queue. hpcsched's allocator is told the expected cost (the mean wait at the current load);
  the actual wait is drawn from the simulation's seeded random stream.

  A policy whose jobs grow make-before-break (``before_break``: hpcsched's, docs/elastic.md)
  keeps training at the old size while the larger allocation waits, then pauses for the
  checkpoint and the start only; its allocator is told so (:class:`RestartCost`'s
  ``grow_before_break``). The fixed model has no queue to wait in and pauses every change alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcsched.allocator import RestartCost


@dataclass(frozen=True)
class RestartModel:
    """``kind`` is ``"fixed"`` or ``"slurm"`` (module docstring)."""

    kind: str = "fixed"
    seconds: float = 30.0
    checkpoint_s: float = 10.0
    start_s: float = 5.0
    base_wait_s: float = 30.0
    max_load: float = 0.95

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "slurm"):
            raise ValueError(f"restart cost must be 'fixed' or 'slurm': {self.kind!r}")
        if min(self.seconds, self.checkpoint_s, self.start_s, self.base_wait_s) < 0 or not 0 <= self.max_load < 1:
            raise ValueError(f"restart cost parameters out of range: {self}")

    @classmethod
    def parse(cls, text: str) -> RestartModel:
        """``"30"`` (seconds, fixed) or ``"slurm"``."""
        if text.strip().lower() == "slurm":
            return cls(kind="slurm")
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"restart cost must be a number of seconds or 'slurm': {text!r}") from None
        return cls(kind="fixed", seconds=seconds)

    @property
    def label(self) -> str:
        return "slurm" if self.kind == "slurm" else f"{self.seconds:g}s"

    def mean_wait(self, load: float) -> float:
        return self.base_wait_s / (1.0 - min(max(load, 0.0), self.max_load))

    def expected(self, load: float, before_break: bool = False) -> RestartCost:
        """The cost model the allocator prices restarts with."""
        if self.kind == "fixed":
            return RestartCost.fixed(self.seconds)
        return RestartCost(checkpoint_s=self.checkpoint_s, start_s=self.start_s, queue_wait_s=self.mean_wait(load),
                           grow_before_break=before_break)  # fmt: skip

    def draw_change(
        self, rng: np.random.Generator, current: int, target: int, load: float, before_break: bool = False
    ) -> tuple[float, float]:
        """One change, drawn from the seeded stream: ``(seconds the job trains on at its old size
        while the new allocation waits, then seconds paused)``; the first is 0 unless it is a
        make-before-break grow, both are 0 when the job stops (it holds nothing)."""
        if target == 0 or current == target:
            return 0.0, 0.0
        if self.kind == "fixed":
            return 0.0, self.seconds
        cost = RestartCost(checkpoint_s=self.checkpoint_s, start_s=self.start_s, queue_wait_s=0.0)
        pause = cost.seconds(current, target)
        if not (current == 0 or target > current):
            return 0.0, pause
        wait = float(rng.exponential(self.mean_wait(load)))
        return (wait, pause) if before_break and current > 0 else (0.0, pause + wait)
