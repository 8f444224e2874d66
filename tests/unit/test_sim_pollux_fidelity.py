"""benchmarks/pollux_fidelity.py without simulating: the published table it checks against, and
how a subsample is reported."""

from __future__ import annotations

from types import ModuleType

import pytest
from benchmark_loader import load_benchmark

from hpcsched.simulator.data import data_dir


def fidelity() -> ModuleType:
    return load_benchmark("pollux_fidelity")


def test_the_published_table_has_every_workload_at_every_load() -> None:
    published = fidelity().published(data_dir())
    assert len(published) == 32
    assert published["1.0", 1] == 2089.0
    assert published["2.0", 8] == 6010.0
    assert published["0.5", 7] == 2881.0


def test_the_table_names_the_cells_run_and_flags_those_off_by_more_than_five_percent() -> None:
    module = fidelity()
    rows = {
        "1.0/workload-1": module.row(("1.0", 1), 2000.0, {"avg_jct": 2090.0, "restarts_per_job": 3.0}),
        "1.0/workload-2": module.row(("1.0", 2), 2000.0, {"avg_jct": 2110.0, "restarts_per_job": 3.0}),
        "2.0/workload-1": module.row(("2.0", 1), 6186.0, None),
    }
    assert rows["1.0/workload-1"]["within"] and not rows["1.0/workload-2"]["within"]
    assert rows["1.0/workload-2"]["ratio"] == pytest.approx(1.055)
    text = module.table("pollux-faithful", rows)
    assert "Cells run: 2 of 3 (1.0/workload-1, 1.0/workload-2); within +-5%: 1 of 2." in text
    assert "| 2.0 | workload-1 | 6,186 | not run |" in text
