"""cluster/compat-results: one release's integration-suite counts into docs/compatibility.md's table."""

from __future__ import annotations

import datetime
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    path = REPO / "cluster" / "compat-results"
    loader = importlib.machinery.SourceFileLoader("compat_results", str(path))
    spec = importlib.util.spec_from_loader("compat_results", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_results"] = module  # dataclasses look their module up by name
    loader.exec_module(module)
    return module


results = load()
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="2"
skipped="3" tests="40" time="10.0"></testsuite></testsuites>"""
PAGE = f"""# Compatibility

Before.

{results.START}
{results.HEADER}
| 26.05.5 | sid | 5.8.6 | 1 | 0 | 0 | 2026-12-01 | `make compat RELEASES=sid` |
| 24.11.5 | trixie | 5.4.2 | 5 | 1 | 0 | 2026-12-01 | `make compat RELEASES=trixie` |
{results.END}

After.
"""


def test_counts_read_failures_and_errors_as_failed_and_the_rest_as_passed() -> None:
    assert results.counts(JUNIT) == results.Counts(passed=34, failed=3, skipped=3)


def test_only_counts_the_tests_under_the_directories_named() -> None:
    cases = """<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1">
    <testcase classname="tests.unit.test_a" name="u"><failure/></testcase>
    <testcase classname="tests.integration.test_run" name="ok"/>
    <testcase classname="tests.integration.test_run" name="bad"><error/></testcase>
    <testcase classname="tests.e2e.test_demo" name="skip"><skipped/></testcase>
    <testcase classname="tests.integrationx.test_b" name="not under it"/>
    </testsuite></testsuites>"""
    assert results.counts(cases, ("tests/integration", "tests/e2e/")) == results.Counts(passed=1, failed=1, skipped=1)
    assert results.counts(cases) == results.Counts(passed=2, failed=2, skipped=1)


def test_a_new_run_replaces_only_its_releases_row_and_rows_stay_in_slurm_order() -> None:
    row = results.row("trixie", "24.11.5", "5.4.2", results.Counts(40, 0, 2), datetime.date(2026, 12, 5),
                      "make compat RELEASES=trixie")
    page = results.update(PAGE, row, "trixie")
    lines = [line for line in page.splitlines() if line.startswith("| 2")]
    assert lines == ["| 24.11.5 | trixie | 5.4.2 | 40 | 0 | 2 | 2026-12-05 | `make compat RELEASES=trixie` |",
                     "| 26.05.5 | sid | 5.8.6 | 1 | 0 | 0 | 2026-12-01 | `make compat RELEASES=sid` |"]
    assert page.startswith("# Compatibility\n\nBefore.\n") and page.endswith("\nAfter.\n")


def test_a_first_run_of_a_release_adds_its_row() -> None:
    row = results.row("bookworm", "22.05.8", "4.3.1", results.Counts(7, 0, 0), datetime.date(2026, 12, 5), "c")
    page = results.update(PAGE, row, "bookworm")
    assert [line.split("|")[2].strip() for line in page.splitlines() if line.startswith("| 2")] == [
        "bookworm", "trixie", "sid"]


def test_a_page_without_the_markers_is_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="markers are missing"):
        results.update("# Compatibility\n", "| 24.11.5 | trixie |", "trixie")


def test_versions_are_read_from_what_the_tools_print() -> None:
    assert results.version("slurm-wlm 24.11.5") == "24.11.5"
    assert results.version("podman version 5.4.2") == "5.4.2"
    with pytest.raises(ValueError, match="no version number"):
        results.version("podman")
