"""What the allocator knows about each elastic job, and what a change of size costs it.

Everything here is a frozen value built by the caller (the daemon from its store and the job's
reported progress, the simulator from its replay), so the allocator itself stays pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.throughput import ThroughputParams


@dataclass(frozen=True)
class GoodputModel:
    """The job-level models of one job: step time, gradient noise, and the batch sizes it allows."""

    params: ThroughputParams
    noise: GradientNoise
    limits: BatchLimits


@dataclass(frozen=True)
class RestartCost:
    """Seconds without training progress that a change of allocation costs, by kind of change.

    Unlike Pollux, where a re-allocation pauses a job for a fixed 30 s, a resize here is a trip
    through Slurm: write a checkpoint, leave the allocation, wait in the queue for the new one,
    start the container and ``torchrun`` again, load the checkpoint. Shrinking can keep the
    allocation (``scontrol update NumNodes=``, see docs/architecture), so it skips the queue when
    ``shrink_in_place``. A job that is not running yet pays only the queue and the start.

    With ``grow_before_break`` a grow is make-before-break (docs/elastic.md): the job keeps
    training at its current size while the larger allocation waits in the queue, so the wait costs
    only the speedup it delays, ``queue_wait_s * (1 - current / target)`` (with throughput about
    proportional to GPUs), plus the checkpoint and the start.
    """

    checkpoint_s: float = 10.0
    start_s: float = 5.0
    queue_wait_s: float = 0.0
    shrink_in_place: bool = True
    grow_before_break: bool = False

    def __post_init__(self) -> None:
        if min(self.checkpoint_s, self.start_s, self.queue_wait_s) < 0.0:
            raise ValueError(f"restart cost components must be >= 0: {self}")

    @classmethod
    def fixed(cls, seconds: float) -> RestartCost:
        """Every change costs ``seconds`` (Pollux's simulator uses 30)."""
        return cls(checkpoint_s=0.0, start_s=seconds, queue_wait_s=0.0, shrink_in_place=False)

    def seconds(self, current_gpus: int, target_gpus: int) -> float:
        """Predicted pause when going from ``current_gpus`` to ``target_gpus`` (0 = not running)."""
        if current_gpus == target_gpus:
            return 0.0
        if current_gpus == 0:
            return self.queue_wait_s + self.start_s
        if target_gpus == 0:
            return self.checkpoint_s
        if target_gpus < current_gpus and self.shrink_in_place:
            return self.checkpoint_s + self.start_s
        if target_gpus > current_gpus and self.grow_before_break:
            return self.checkpoint_s + self.start_s + self.queue_wait_s * (1.0 - current_gpus / target_gpus)
        return self.checkpoint_s + self.queue_wait_s + self.start_s


@dataclass(frozen=True)
class ElasticJob:
    """One job the allocator may size.

    ``remaining_work`` is in the goodput's unit (samples at the job's initial batch size ``M0``),
    so that ``remaining_work / goodput`` is the predicted remaining run time: an estimate from
    what the job reports (:func:`~.remaining.estimate_remaining_work`); ``math.inf`` when unknown
    (then restarts are priced as free of consequence for the job itself, as in Pollux).
    Sizes are GPUs; ``whole_nodes`` jobs only take multiples of ``gpus_per_node`` (the real
    cluster, where a Slurm job owns its nodes). ``time_in_state_s`` is how long the job has been
    waiting (``current_gpus == 0``) or running at any size (otherwise): waiting time drives the
    no-starvation rule, running time protects a job just started from being preempted again.
    ``time_at_size_s`` is how long it has run at its current size: a job resized a moment ago is
    charged more for the next resize (``AllocatorPolicy.settle_s``), unless it is ``climbing``:
    running at the largest size it has ever run at, so that a grow goes on up rather than back
    (``AllocatorPolicy.settle_climbs``). ``never_ran``: a waiting job that has not run yet (no
    attained service; ``AllocatorPolicy.never_ran_first``); a job that ran before and waits again
    (preempted, requeued) has not.
    """

    key: str
    model: GoodputModel
    min_gpus: int
    max_gpus: int
    current_gpus: int = 0
    remaining_work: float = math.inf
    age_s: float = 0.0
    time_in_state_s: float = 0.0
    time_at_size_s: float = math.inf
    restarts: int = 0
    restart: RestartCost = RestartCost()
    account: str = ""
    whole_nodes: bool = False
    user: str = ""  # the Slurm user (site mode); "" when unknown or one user's own jobs
    weight: float = 1.0  # the user's fair-share weight (site mode: from Slurm's shares); relative
    climbing: bool = False  # runs at the largest size it has run at (a grow goes on up)
    never_ran: bool = False  # waits and has never run (least attained service)

    def __post_init__(self) -> None:
        if not 1 <= self.min_gpus <= self.max_gpus:
            raise ValueError(f"need 1 <= min_gpus <= max_gpus: {self.key}")
        if not (math.isfinite(self.weight) and self.weight > 0.0):
            raise ValueError(f"a user's weight must be finite and positive: {self.key}")
        if self.current_gpus < 0 or min(self.remaining_work, self.age_s, self.time_in_state_s, self.time_at_size_s) < 0.0:
            raise ValueError(f"negative size, work or time: {self.key}")
        if self.never_ran and self.current_gpus:
            raise ValueError(f"a job that holds GPUs has run: {self.key}")

    @property
    def waiting_s(self) -> float:
        return self.time_in_state_s if self.current_gpus == 0 else 0.0
