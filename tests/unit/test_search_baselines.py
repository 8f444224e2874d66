"""benchmarks/search_baselines.py scores adaptive against the best and the median fixed batch."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchmark_loader import load_benchmark


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_benchmark("search_baselines", monkeypatch)


def run(trial: str, seed: int, config: str, reached_at: float | None, final: float) -> dict[str, Any]:
    """A run whose val_acc is 0.5 until ``reached_at`` seconds, then ``final`` (never, if None)."""
    curve = [[5.0, 0.5], [reached_at, final]] if reached_at is not None else [[5.0, 0.5], [50.0, 0.5]]
    return {"trial": trial, "seed": seed, "config": config, "curve": curve, "final_acc": curve[-1][1], "batches": [16]}


def args(target: float = 0.9) -> argparse.Namespace:
    return argparse.Namespace(target=target, lr_rule="sqrt", trials=["a", "b"], batches=[16, 32, 64], epochs=3,
                              summarise_only=True, quick=False, seeds=[0, 1], date="today", workload="cpu",
                              parallel=1)  # fmt: skip


def test_adaptive_is_scored_against_the_best_and_the_median_fixed_batch(bench: ModuleType) -> None:
    times = {"fixed-16": 30.0, "fixed-32": 20.0, "fixed-64": None, "adaptive": 15.0}
    runs = [run(t, s, c, at, 0.95) for t in ("a", "b") for s in (0, 1) for c, at in times.items()]
    data, table = bench.summarise(runs, args())
    whole = data["whole_search"]
    assert whole["best_single_fixed"] == "fixed-32"
    assert whole["mean_time"]["fixed-64"] is None  # never reached: not a finite time
    assert whole["median_fixed"] == pytest.approx(60.0)  # median of 60, 40 and never
    checks = whole["checks"]
    assert checks["adaptive <= 1.0x the best single fixed batch in hindsight"] == pytest.approx(30 / 40)
    assert checks["adaptive <= 0.7x the median fixed choice"] == pytest.approx(0.5)
    assert "| fixed-64 | not reached |" in table


def test_adaptive_that_misses_the_target_or_loses_accuracy_fails_the_targets(bench: ModuleType) -> None:
    times = {"fixed-16": 30.0, "fixed-32": 20.0, "fixed-64": 25.0}
    runs = [run(t, s, c, at, 0.95) for t in ("a", "b") for s in (0, 1) for c, at in times.items()]
    runs += [run(t, s, "adaptive", 10.0 if t == "a" else None, 0.5) for t in ("a", "b") for s in (0, 1)]
    data, table = bench.summarise(runs, args())
    assert data["whole_search"]["checks"]["adaptive <= 1.0x the best single fixed batch in hindsight"] is None
    assert data["whole_search"]["worst_acc_gap_pp"] == pytest.approx(-45.0)
    assert table.count("| NO |") == 4


def test_fixed_learning_rates_scale_from_the_reference(bench: ModuleType) -> None:
    assert bench.fixed_lr(64, "sqrt") == pytest.approx(2e-3)
    assert bench.fixed_lr(64, "linear") == pytest.approx(4e-3)
    assert math.isclose(bench.fixed_lr(16, "sqrt"), 1e-3)


def test_an_interrupted_run_is_scored_on_the_seeds_it_completed(bench: ModuleType) -> None:
    times = {"fixed-16": 30.0, "fixed-32": 20.0, "fixed-64": 25.0, "adaptive": 15.0}
    runs = [run(t, s, c, at, 0.95) for t in ("a", "b") for s in (0, 1) for c, at in times.items()]
    data, _ = bench.summarise(runs[:-1], args())  # seed 1 of trial b lacks its adaptive run
    assert data["seeds"] == [0]


def test_runs_in_parallel_train_every_configuration_once_and_log_each(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bench, "LOGS", tmp_path)
    ran = []

    def fake(trial: str, seed: int, name: str, extra: list[str], _: argparse.Namespace) -> dict[str, Any]:
        ran.append((trial, seed, name))
        return {**run(trial, seed, name, 1.0, 0.95), "time_to_target": 1.0, "train_time": 2.0}

    monkeypatch.setattr(bench, "run_one", fake)
    settings = argparse.Namespace(**{**vars(args()), "parallel": 3, "workload": "fixed-step", "summarise_only": False})
    runs = bench.run_all(settings)
    configs = ("fixed-16", "fixed-32", "fixed-64", "adaptive", "adaptive-sqrt", "adaptive-split", "adaptive-sqrt-split")
    expected = {(t, s, c) for t in ("a", "b") for s in (0, 1) for c in configs}
    assert sorted(ran) == sorted(expected) and len(runs) == len(expected)
    logged = (tmp_path / "runs-fixed-step.jsonl").read_text().splitlines()
    assert sorted((r["trial"], r["seed"], r["config"]) for r in map(json.loads, logged)) == sorted(expected)
    assert "--workload fixed-step --parallel 3" in bench.command(settings)


def test_auto_target_is_what_every_fixed_batch_of_a_trial_reached_whatever_adaptive_did(bench: ModuleType) -> None:
    runs = [run("a", s, c, 10.0 * (i + 1), acc) for s in (0, 1)
            for i, (c, acc) in enumerate([("fixed-16", 0.934), ("fixed-32", 0.957), ("adaptive", 0.70)])]  # fmt: skip
    runs += [run("b", s, c, 10.0, 0.88) for s in (0, 1) for c in ("fixed-16", "fixed-32", "adaptive")]
    assert bench.targets_of(runs, "auto") == {"a": 0.93, "b": 0.88}
    assert bench.targets_of(runs, "0.8") == {"a": 0.8, "b": 0.8}
    data, table = bench.summarise(runs, argparse.Namespace(**{**vars(args()), "target": "auto"}))
    assert data["whole_search"]["mean_time"]["adaptive"] is None  # adaptive never reached trial a's 0.93
    assert data["whole_search"]["mean_time"]["fixed-16"] == pytest.approx(20.0)
    assert "target val_acc a 0.93, b 0.88" in table
    rows = [line.split(" | ")[0] for line in table.splitlines() if line.startswith(("| fixed-", "| adaptive |"))]
    assert rows == ["| fixed-16", "| fixed-32", "| adaptive"]  # the whole search's rows in grid order


def test_epochs_to_target_give_each_batch_its_measured_efficiency(bench: ModuleType) -> None:
    def curve_run(config: str, epochs_to_09: int) -> dict[str, Any]:
        curve = [[10.0 * e, 0.95 if e >= epochs_to_09 else 0.5] for e in range(1, 6)]
        return {"trial": "a", "seed": 0, "config": config, "curve": curve, "final_acc": 0.95, "batches": [16]}

    runs = [curve_run("fixed-16", 2), curve_run("fixed-64", 4), curve_run("adaptive", 3)]
    lines = bench.epochs_lines(runs, {"a": 0.9}, ["fixed-16", "fixed-64", "adaptive"])
    assert "| a | 2.0 (1.00) | 4.0 (0.50) | 3.0 (0.67) |" in lines


def test_a_trial_reports_its_last_noise_measurement(bench: ModuleType, tmp_path: Path) -> None:
    progress = tmp_path / "progress.jsonl"
    lines = [{"event": "start", "time": 100.0}, {"event": "adapt", "time": 100.5, "global_batch": 32},
             {"event": "metrics", "time": 110.0, "metrics": {"val_acc": 0.91}},
             {"event": "done", "time": 111.0, "grad_sqr": 2.0, "grad_var": 500.0}]  # fmt: skip
    progress.write_text("\n".join(map(json.dumps, lines)) + "\n")
    result = bench.trial_result(progress, 0.9)
    assert result["final_noise"] == {"grad_sqr": 2.0, "grad_var": 500.0}
    assert result["time_to_target"] == pytest.approx(10.0) and result["batches"] == [32]
    run = {"trial": "a", "seed": 0, "config": "adaptive", **result}
    assert bench.batches_lines([run])[-1] == "- a seed 0: 32 (noise scale at the end 250)"


def test_each_adaptive_variant_is_scored_against_the_same_fixed_batches(bench: ModuleType) -> None:
    times = {"fixed-16": 30.0, "fixed-32": 20.0, "fixed-64": 40.0, "adaptive": 25.0, "adaptive-sqrt": 10.0}
    runs = [run(t, s, c, at, 0.95) for t in ("a", "b") for s in (0, 1) for c, at in times.items()]
    data, table = bench.summarise(runs, args())
    assert data["whole_search"]["checks"]["adaptive <= 1.0x the best single fixed batch in hindsight"] == pytest.approx(1.25)
    sqrt = data["variants"]["adaptive-sqrt"]["whole_search"]["checks"]
    assert sqrt["adaptive-sqrt <= 1.0x the best single fixed batch in hindsight"] == pytest.approx(0.5)
    assert sqrt["adaptive-sqrt <= 0.7x the median fixed choice"] == pytest.approx(1 / 3)
    assert "## Per trial (adaptive-sqrt): mean time to target over seeds (s), final val_acc" in table
    assert table.count("## Whole search (sum over trials; mean over seeds)") == 1
