"""What the allocator returns: per job a target size, its placement, the predicted gain and cost
of getting there, and a sentence saying why."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """``gain_s``: seconds the job finishes earlier at ``target_gpus`` than at ``current_gpus``
    over its remaining run, before the restart (``inf`` for a start, ``-inf`` for a stop, ``nan``
    when the remaining work is unknown); ``cost_s``: the predicted restart pause (0 if unchanged);
    ``remaining_s``: the predicted run left at ``target_gpus`` (``inf`` when stopped or unknown).
    ``placement`` lists ``(node index, GPUs)``: whole nodes and at most one partial node."""

    key: str
    current_gpus: int
    target_gpus: int
    placement: tuple[tuple[int, int], ...]
    gain_s: float
    cost_s: float
    reason: str
    remaining_s: float = math.inf

    @property
    def changed(self) -> bool:
        return self.current_gpus != self.target_gpus

    @property
    def num_nodes(self) -> int:
        return len(self.placement)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (infinite gains become strings)."""
        gain: object = self.gain_s if math.isfinite(self.gain_s) else str(self.gain_s)
        return {
            "key": self.key,
            "current_gpus": self.current_gpus,
            "target_gpus": self.target_gpus,
            "placement": [list(p) for p in self.placement],
            "gain_s": gain,
            "cost_s": self.cost_s,
            "remaining_s": self.remaining_s if math.isfinite(self.remaining_s) else None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Allocation:
    """All decisions of one round, in the order the jobs were given, and the objective reached.
    ``next_free_s``: predicted seconds until the first running job ends by itself at its current
    size (``inf``: none is predicted to), which is how long a job left waiting would wait."""

    decisions: tuple[Decision, ...]
    objective: float
    status_quo_objective: float | None
    next_free_s: float = math.inf

    def targets(self) -> Mapping[str, int]:
        return {d.key: d.target_gpus for d in self.decisions}

    def __getitem__(self, key: str) -> Decision:
        return next(d for d in self.decisions if d.key == key)
