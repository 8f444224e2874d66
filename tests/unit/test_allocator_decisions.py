"""Unit tests of the allocator's parts: packing, restart costs, candidate sizes, reasons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpcsched.allocator import HPCSCHED, Cluster, ElasticJob, GoodputModel, Limits, RestartCost, admission_shrinks, allocate
from hpcsched.allocator.candidates import job_table, size_grid
from hpcsched.allocator.placement import NodeLedger
from hpcsched.models import BatchLimits, GradientNoise, ThroughputParams

SCALES = GoodputModel(ThroughputParams(0.05, 0.002, 0.08, 0.002, 0.02, 0.001, 1.5), GradientNoise(1.0, 4000.0),
                      BatchLimits(64, 4096, 256, 3))


def job(key: str, current: int = 0, work: float = 1e7, **kw: object) -> ElasticJob:
    fields: dict[str, object] = {"min_gpus": 1, "max_gpus": 16, "restart": RestartCost.fixed(30.0)}
    fields.update(kw)
    return ElasticJob(key=key, model=SCALES, current_gpus=current, remaining_work=work, **fields)  # type: ignore[arg-type]


def test_ledger_packs_whole_nodes_plus_one_best_fit_piece() -> None:
    ledger = NodeLedger([4, 4, 4, 3], 4)
    assert ledger.place(0, 6)  # one whole node + a piece of 2 on the fullest node with room (node 3)
    assert ledger.holdings[0] == ((0, 4), (3, 2))
    assert ledger.place(1, 4) and ledger.place(2, 3)
    assert ledger.free == [0, 0, 1, 1]
    assert not ledger.place(3, 2)  # two single free GPUs on different nodes: a 2-GPU job does not fit
    assert ledger.holdings.get(3) is None and ledger.free == [0, 0, 1, 1]
    ledger.release(0)
    assert ledger.free == [4, 0, 1, 3]


def test_placeable_agrees_with_place() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        ledger = NodeLedger(list(rng.integers(0, 5, size=5)), 4)
        for key in range(4):
            ledger.place(key, int(rng.integers(1, 9)))
        sizes = np.arange(1, 21)
        predicted = ledger.placeable(0, sizes)
        for size, ok in zip(sizes, predicted, strict=True):
            trial = NodeLedger(ledger.free, 4)
            trial.holdings, trial.buckets = dict(ledger.holdings), [set(b) for b in ledger.buckets]
            assert bool(ok) == trial.place(0, int(size)), (ledger.free, ledger.holdings, size)


def test_restart_cost_by_kind_of_change() -> None:
    cost = RestartCost(checkpoint_s=10, start_s=5, queue_wait_s=60)
    assert cost.seconds(4, 4) == 0
    assert cost.seconds(0, 4) == 65  # queue + start
    assert cost.seconds(4, 8) == 75  # checkpoint + queue + start
    assert cost.seconds(8, 4) == 15  # shrink in place: no queue
    assert cost.seconds(4, 0) == 10  # stop: checkpoint only
    assert RestartCost.fixed(30).seconds(8, 4) == 30
    # make-before-break: 4 -> 8 trains on at 4 GPUs through the 60 s wait, losing half its speedup
    before_break = RestartCost(checkpoint_s=10, start_s=5, queue_wait_s=60, grow_before_break=True)
    assert before_break.seconds(4, 8) == 45
    assert before_break.seconds(0, 4) == 65  # a first start still waits in the queue
    assert before_break.seconds(8, 4) == 15


def test_size_grid_is_dense_up_to_four_nodes_then_whole_nodes_then_geometric() -> None:
    grid = size_grid(4, 2048, whole_nodes=False)
    assert grid[:16] == tuple(range(1, 17))
    assert grid[16:20] == (20, 24, 28, 32)
    assert all(g % 4 == 0 for g in grid[16:])
    assert len(grid) < 80
    assert size_grid(4, 64, whole_nodes=True) == tuple(4 * n for n in range(1, 17))


def test_current_size_off_the_grid_stays_a_candidate() -> None:
    table = job_table(job("a", current=22, max_gpus=64), Cluster(16, 4), Limits())
    assert 22 in table.sizes and 64 in table.sizes
    assert np.all(np.diff(table.sizes) > 0)


def test_free_cluster_is_shared_and_every_job_starts() -> None:
    allocation = allocate(Cluster(4, 4), [job("a"), job("b"), job("c", work=1e5)])
    assert all(d.target_gpus >= 1 for d in allocation.decisions)
    assert sum(d.target_gpus for d in allocation.decisions) <= 16
    assert all(d.reason.startswith("starts on") for d in allocation.decisions)
    assert all(d.gain_s == math.inf and d.cost_s == 30.0 for d in allocation.decisions)


def test_a_newcomer_gets_its_minimum_from_a_running_job() -> None:
    running = job("big", current=16, time_in_state_s=600.0, time_at_size_s=600.0)
    allocation = allocate(Cluster(4, 4), [running, job("new")])
    assert allocation["new"].target_gpus >= 1
    assert allocation["big"].target_gpus < 16
    assert allocation["big"].reason.startswith("shrinks 16->")
    assert allocation["big"].gain_s < 0


def test_a_job_about_to_finish_is_not_grown() -> None:
    """Growing from 4 to 16 GPUs would save a fraction of a second of a nearly finished run."""
    allocation = allocate(Cluster(4, 4), [job("short", current=4, work=1000.0, time_at_size_s=1e4)])
    assert allocation["short"].target_gpus == 4
    assert allocation["short"].reason.startswith("keeps 4 GPUs")


def test_a_long_job_grows_into_free_nodes_and_says_why() -> None:
    allocation = allocate(Cluster(4, 4), [job("long", current=4, work=1e9, time_at_size_s=1e4)])
    decision = allocation["long"]
    assert decision.target_gpus > 4
    assert decision.gain_s > decision.cost_s * (1 + HPCSCHED.hysteresis)
    assert decision.reason.startswith(f"grows 4->{decision.target_gpus} GPUs")


def test_down_nodes_and_foreign_jobs_are_not_used() -> None:
    cluster = Cluster(3, 4, unavailable_nodes=frozenset({0}), foreign_gpus={1: 3})
    allocation = allocate(cluster, [job("a", max_gpus=12), job("b", max_gpus=12)])
    used = [node for d in allocation.decisions for node, _ in d.placement]
    assert 0 not in used
    assert sum(g for d in allocation.decisions for n, g in d.placement if n == 1) <= 1


def test_a_minimum_beyond_the_limits_waits_with_a_reason() -> None:
    allocation = allocate(Cluster(4, 4), [job("wide", min_gpus=12, max_gpus=16)], limits=Limits(max_nodes_per_job=2))
    assert allocation["wide"].target_gpus == 0
    assert "exceeds the capacity or the node limits" in allocation["wide"].reason


def test_starving_job_preempts_the_longest_running_job() -> None:
    old = job("old", current=4, min_gpus=4, max_gpus=4, time_in_state_s=7200.0)
    young = job("young", current=4, min_gpus=4, max_gpus=4, time_in_state_s=60.0)
    starved = job("starved", min_gpus=4, max_gpus=4, time_in_state_s=4000.0)
    allocation = allocate(Cluster(2, 4), [old, young, starved])
    assert allocation.targets() == {"old": 0, "young": 4, "starved": 4}
    assert allocation["old"].reason.startswith("stops")
    assert "starving" in allocation["starved"].reason


def test_decision_as_dict_is_json_friendly() -> None:
    record = allocate(Cluster(1, 4), [job("a")])["a"].as_dict()
    assert record["gain_s"] == "inf" and record["target_gpus"] == record["placement"][0][1]  # type: ignore[index]


@pytest.mark.parametrize("bad", [{"min_gpus": 0}, {"min_gpus": 5, "max_gpus": 4}, {"work": -1.0}, {"current": -1}])
def test_invalid_jobs_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        job("x", **bad)


def test_an_arrival_applies_only_the_shrinks_that_make_room() -> None:
    """Between rounds a newcomer admitted at 2 GPUs with 1 idle needs one GPU freed: the largest
    shrink of the decision does it, the other shrink and the grow wait for the next round."""
    current = {"big": 8, "small": 3, "grower": 2, "new": 0}
    targets = {"big": 6, "small": 2, "grower": 3, "new": 2}
    assert admission_shrinks(current, targets, idle=1) == {"big": 6}
    assert admission_shrinks(current, targets, idle=2) == {}
    assert admission_shrinks(current, targets | {"new": 4}, idle=1) == {"big": 6, "small": 2}
    assert admission_shrinks(current, targets | {"new": 0}, idle=0) == {}, "nobody admitted, nobody shrinks"
