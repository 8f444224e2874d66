"""Observations from the Pollux simulator's recorded GPU profiles (CSV text in, values out).

The profiles (petuum/adaptdl, ``simulator/traces/<model>/``) hold, per configuration, the time of
one iteration (``step_time``) and the part of it spent synchronising gradients beyond the compute
(``sync_time``); no gradient accumulation was used. Their compute-only micro-step time is
therefore ``step_time - sync_time``, the same quantity the Pollux simulator uses. The caller reads
the files, so this module stays free of I/O.
"""

from __future__ import annotations

import csv
import io

from .throughput import Observation


def _observation(num_nodes: int, num_replicas: int, row: dict[str, str]) -> Observation:
    step_time = float(row["step_time"])
    compute = step_time - float(row["sync_time"])
    return Observation(
        num_nodes=num_nodes,
        num_replicas=num_replicas,
        local_bsz=int(row["local_bsz"]),
        accum_steps=0,
        step_time=step_time,
        compute_time=compute if compute > 0.0 else None,
    )


def placement_shape(placement: str) -> tuple[int, int]:
    """``"1122"`` (GPUs per node, one digit each) -> (4 nodes, 6 replicas)."""
    digits = [int(d) for d in placement.strip() if d != "0"]
    if not digits:
        raise ValueError(f"placement without GPUs: {placement!r}")
    return len(digits), sum(digits)


def observations_from_placements(text: str) -> list[Observation]:
    """Parse ``placements.csv`` (placement, local_bsz, step_time, sync_time)."""
    rows = csv.DictReader(io.StringIO(text))
    return [_observation(*placement_shape(row["placement"]), row) for row in rows]


def observations_from_scalability(text: str) -> list[Observation]:
    """Parse ``scalability.csv`` (num_nodes, num_replicas, local_bsz, step_time, sync_time)."""
    rows = csv.DictReader(io.StringIO(text))
    return [_observation(int(row["num_nodes"]), int(row["num_replicas"]), row) for row in rows]
