"""benchmarks/queue_wait.py: the offered load it submits and how it scores waits against the model."""

from __future__ import annotations

from types import ModuleType

import pytest
from benchmark_loader import load_benchmark

from hpcsched.simulator.restarts import RestartModel


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_benchmark("queue_wait", monkeypatch)


def test_the_arrivals_offer_the_asked_load(bench: ModuleType) -> None:
    plan = bench.arrivals(0.8, nodes=8, seed=3, span_s=20000.0, mean_run_s=20.0)
    assert all(0.0 < a.at_s < 20000.0 and a.run_s >= 1 for a in plan)
    assert [a.at_s for a in plan] == sorted(a.at_s for a in plan)
    offered = sum(a.run_s for a in plan) / (20000.0 * 8)
    assert offered == pytest.approx(0.8, rel=0.08)
    assert bench.arrivals(0.8, 8, seed=3) == bench.arrivals(0.8, 8, seed=3)


def test_load_counts_the_jobs_present_and_fits_means_free_with_nobody_ahead(bench: ModuleType) -> None:
    rows = [  # two nodes: a runs 0-10, b 1-15; c waits from 2 to 10; d arrives at 3 behind c
        {"job": 1, "submit": 0.0, "start": 0.0, "end": 10.0},
        {"job": 2, "submit": 1.0, "start": 1.0, "end": 15.0},
        {"job": 3, "submit": 2.0, "start": 10.0, "end": 20.0},
        {"job": 4, "submit": 3.0, "start": 15.0, "end": 16.0},
        {"job": 5, "submit": 21.0, "start": 22.0, "end": 23.0},  # the cluster is empty again
    ]
    scored = bench.with_load(rows, nodes=2)
    assert [r["wait"] for r in scored] == [0.0, 0.0, 8.0, 12.0, 1.0]
    assert [r["load"] for r in scored] == [0.5, 1.0, 1.5, 2.0, 0.5]
    assert [r["fits"] for r in scored] == [True, True, False, False, True]


def test_waits_are_compared_per_load_with_the_models_mean(bench: ModuleType) -> None:
    rows = [
        {"wait": 1.0, "load": 0.25, "fits": True},
        {"wait": 3.0, "load": 0.25, "fits": True},
        {"wait": 40.0, "load": 1.25, "fits": False},
    ]
    table = bench.compare(rows, RestartModel(kind="slurm"))
    assert [(b["bin"], b["fits"], b["jobs"]) for b in table] == [([0.0, 0.5], True, 2), ([1.0, 1.5], False, 1)]
    assert table[0]["measured_mean_s"] == 2.0 and table[0]["waited_share"] == 0.5
    assert table[0]["model_mean_s"] == pytest.approx(30.0 / 0.75)
    assert table[1]["model_mean_s"] == pytest.approx(30.0 / 0.05)
