"""benchmarks/noise_probe.py: the efficiency a noise scale implies, and its report."""

from __future__ import annotations

import argparse
from types import ModuleType

import pytest
import torch
from benchmark_loader import load_benchmark


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_benchmark("noise_probe", monkeypatch)


def test_efficiency_is_the_goodput_models(bench: ModuleType) -> None:
    assert bench.efficiency(0.0, 512) == pytest.approx(16 / 512)  # no noise: a bigger batch buys nothing per sample
    assert bench.efficiency(1e12, 512) == pytest.approx(1.0)  # all noise: every sample counts fully
    assert bench.efficiency(156.0, 512) == pytest.approx(172 / 668)


def test_report_compares_truth_probe_and_running_estimate(bench: ModuleType) -> None:
    def cell(sqr: float, var: float) -> dict[str, float]:
        phi = var / sqr
        return {"true_sqr": sqr, "true_var": var, "true_phi": phi, "probe_sqr": sqr, "probe_var": var, "probe_phi": phi}

    def row(when: str, step: int, raw: dict[str, float], adam: dict[str, float], running: float) -> dict[str, object]:
        return {"when": when, "step": step, "raw": raw, "adam": adam, "running_phi": running, "pairs_phi": 3 * running}

    rows = [row("step 50", 50, cell(2.0, 100.0), cell(1.0, 100.0), 40.0),
            row("epoch 1", 100, cell(1.0, 200.0), cell(1.0, 300.0), 150.0),
            row("epoch 2", 200, cell(3.0, 400.0), cell(1.0, 300.0), 160.0)]  # fmt: skip
    args = argparse.Namespace(trial="c8-d2", batch=256, epochs=2, draws=4, seed=0, date="today", workload="fixed-step")
    data, table = bench.summarise(rows, args)
    assert data["phi"]["true (raw), ratio of means"] == pytest.approx(400 / 3)  # only the epochs after the first count
    assert data["phi"]["true (Adam-weighted), ratio of means"] == pytest.approx(300.0)
    assert data["phi"]["running estimate at the end"] == pytest.approx(160.0)
    assert data["efficiency"]["running estimate at the end"]["512"] == pytest.approx(176 / 672)
    assert data["phi"]["pairs: running estimate at the end"] == pytest.approx(480.0)
    assert "| epoch 2 | 200 | 3 | 3 | 400 | 400 | 133 | 133 | 300 | 300 | 160 | 480 |" in table


def test_pairs_measurement_is_two_batches_against_their_mean(bench: ModuleType) -> None:
    same = bench.consecutive(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), 8)
    assert same.grad_var == pytest.approx(0.0) and same.grad_sqr == pytest.approx(5.0)  # equal gradients: no noise
    opposite = bench.consecutive(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]), 8)
    assert opposite.grad_var > 0 and opposite.grad_sqr < 0  # all noise (the estimate of |g|^2 is unbiased, not clipped)


def test_each_search_workload_gives_its_data_options(bench: ModuleType) -> None:
    assert bench.data_options("fixed-step") == (8, 24, 0.2)
    assert bench.data_options("cpu") == (24, 8, 0.3)
