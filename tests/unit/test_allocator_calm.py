"""A calm cluster (every job running, half of the GPUs or more idle): a climbing job's grow pays
its restart without the hysteresis, which guards only against resizes that contention reverses."""

from __future__ import annotations

import dataclasses
import math

import pytest

from hpcsched.allocator import HPCSCHED, Cluster, ElasticJob, allocate
from hpcsched.allocator.allocate import calm
from hpcsched.allocator.policy import AllocatorPolicy
from tests.unit.test_allocator_fairness import running

CLUSTER = Cluster(8, 4)  # 32 GPUs


def climber(work: float = 5e5) -> ElasticJob:
    """At 8 GPUs for ten minutes, never larger: a grow to 32 saves 116 s for a 30 s restart,
    more than the restart, less than 7 times it."""
    return dataclasses.replace(running("job", 8, work, at_size_s=600.0, restarts=1, max_gpus=32), climbing=True)


def test_a_climbing_job_alone_in_a_mostly_idle_cluster_grows_into_the_idle_gpus() -> None:
    decision = allocate(CLUSTER, [climber()])["job"]
    assert decision.target_gpus == 32
    assert decision.cost_s < decision.gain_s < decision.cost_s * (1 + HPCSCHED.hysteresis)
    assert decision.reason == ("grows 8->32 GPUs: finishes 116 s earlier, restart 30 s "
                               "(x1.00: 50% or more of the GPUs idle, nobody waiting)")
    disabled = dataclasses.replace(HPCSCHED, calm_share=math.inf)
    assert allocate(CLUSTER, [climber()], disabled)["job"].target_gpus == 8


def test_the_full_hysteresis_applies_when_anyone_waits_or_the_cluster_is_half_busy() -> None:
    newcomer = dataclasses.replace(running("new", 0, 1e9, at_size_s=0.0, restarts=0, max_gpus=4), time_in_state_s=0.0)
    waiting = allocate(CLUSTER, [climber(), newcomer])
    assert not calm(CLUSTER, [climber(), newcomer], HPCSCHED)
    assert waiting["job"].target_gpus == 8 and waiting["new"].target_gpus > 0
    busy = running("busy", 12, 1e9, at_size_s=1e4, restarts=0, max_gpus=12)  # 12 of 32 idle: 37%
    assert not calm(CLUSTER, [climber(), busy], HPCSCHED)
    assert allocate(CLUSTER, [climber(), busy])["job"].target_gpus == 8
    shrunk = dataclasses.replace(climber(), climbing=False)  # ran larger before: a grow may reverse a shrink
    assert allocate(CLUSTER, [shrunk])["job"].target_gpus == 8


@pytest.mark.parametrize("bad", [{"calm_share": -0.1}, {"calm_hysteresis": -1.0}])
def test_negative_calm_knobs_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        AllocatorPolicy(**bad)  # type: ignore[arg-type]
