"""The report's plots are PNG files, drawn with and without accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcsched.jobs.progress import parse_lines
from hpcsched.report import Window, build_report
from hpcsched.report.plots import FILES, write_plots
from hpcsched.report.sacct import merge_runs
from hpcsched.slurm.parse import parse_sacct

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("with_accounting", [True, False])
def test_three_pngs(tmp_path: Path, with_accounting: bool) -> None:
    text = (FIXTURES / "sacct-report-jobs.json").read_text()
    recorded = json.loads((FIXTURES / "sacct-report-jobs-hpcsched.json").read_text())
    runs = merge_runs(parse_sacct(text), text) if with_accounting else None
    progress = {int(k): parse_lines("\n".join(v)) for k, v in recorded["progress"].items()}
    report = build_report(recorded["status"], runs, progress, recorded["recorded"], window=Window(0.0),
                          store_id=recorded["daemon"]["store_id"], accounting_error=None if runs else "sacct failed")
    paths = write_plots(report, tmp_path / "plots")
    assert [p.name for p in paths] == list(FILES)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
