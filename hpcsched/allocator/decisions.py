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
    when the remaining work is unknown); ``cost_s``: the predicted restart pause (0 if unchanged).
    ``placement`` lists ``(node index, GPUs)``: whole nodes and at most one partial node."""

    key: str
    current_gpus: int
    target_gpus: int
    placement: tuple[tuple[int, int], ...]
    gain_s: float
    cost_s: float
    reason: str

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
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Allocation:
    """All decisions of one round, in the order the jobs were given, and the objective reached."""

    decisions: tuple[Decision, ...]
    objective: float
    status_quo_objective: float | None

    def targets(self) -> Mapping[str, int]:
        return {d.key: d.target_gpus for d in self.decisions}

    def __getitem__(self, key: str) -> Decision:
        return next(d for d in self.decisions if d.key == key)
