"""benchmarks/figures.py: a figure the docs quote is checked against the results file it names."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from benchmark_loader import load_benchmark


@pytest.fixture
def figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load_benchmark("figures", monkeypatch)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    (tmp_path / "overhead.json").write_text('{"added_per_node_median_s": 0.3812, "ratio": 0.514}\n')
    return module


def verdicts(module: ModuleType, block: str) -> dict[str, str]:
    return {f.text: f.verdict for f in module.audit_block("docs/x.md", 1, block)}


def test_a_figure_that_rounds_from_the_results_reproduces_and_one_that_does_not_is_stale(figures: ModuleType) -> None:
    block = "benchmarks/overhead.py adds 0.38 s per node, 51% of the time; the old page said 1.20 s."
    assert verdicts(figures, block) == {"0.38 s": "reproduces", "51%": "reproduces", "1.20 s": "stale"}


def test_a_measured_figure_without_an_existing_results_file_is_reported(figures: ModuleType) -> None:
    assert verdicts(figures, "Measured in benchmarks/gone.py: 4.2 s.") == {"4.2 s": "no results file"}
    assert verdicts(figures, "We measured 12 ms here.") == {"12 ms": "no results file"}


def test_a_paragraph_that_names_no_benchmark_and_no_measurement_is_not_a_source(figures: ModuleType) -> None:
    assert verdicts(figures, "The daemon polls every 5 s.") == {}


def test_milliseconds_are_checked_against_seconds_in_the_results(figures: ModuleType) -> None:
    block = "benchmarks/overhead.py: 381 ms per node (not 514 s)."
    assert verdicts(figures, block) == {"381 ms": "reproduces", "514 s": "stale"}
