"""Issue 14: why a launcher could not start the container (the image missing on a node) shows in
``hpcsched status`` and ``status --json``, naming the node and the fix, not only in the logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

from rich.console import Console

from hpcsched.cli import jobs
from hpcsched.images.node import missing
from hpcsched.jobs import layout
from hpcsched.launcher import __main__ as launcher

IMAGE = "localhost/hpcsched-train:latest"


def failed_job(job_dir: Path, **changes: Any) -> dict[str, Any]:
    return {"id": 4, "name": "train", "user": "alice", "state": "FAILED", "nodes": 2, "slurm_job_id": 41,
            "elapsed": 3.0, "progress": None, "reason": "", "exit_code": 2, "job_dir": str(job_dir),
            "attempts": [{"number": 1}], **changes}


def row(job: dict[str, Any]) -> str:
    console = Console(width=400, record=True)
    console.print(jobs.job_table([job]))
    return " ".join(console.export_text().split())


def test_the_launchers_image_error_is_the_failed_jobs_reason(tmp_path: Path) -> None:
    (tmp_path / "attempts" / "1").mkdir(parents=True)
    spec, ctx = mock.Mock(job_dir=str(tmp_path)), mock.Mock(attempt=1, node_name="node2")
    launcher.record_problem(spec, ctx, missing(IMAGE, "node2", ""))
    shown = jobs.with_launcher_problems([failed_job(tmp_path)])[0]
    assert shown["problem"].startswith(f"on node2: image {IMAGE} is not in Podman's storage on node2")
    assert f"`hpcsched image push {IMAGE}`" in shown["problem"]
    assert f"exit 2: on node2: image {IMAGE} is not in Podman's storage on node2" in row(shown)


def test_a_job_without_launcher_problems_shows_its_exit_code(tmp_path: Path) -> None:
    (tmp_path / "attempts" / "1").mkdir(parents=True)
    shown = jobs.with_launcher_problems([failed_job(tmp_path)])[0]
    assert shown["problem"] == ""
    assert row(shown).endswith("exit 2")


def test_only_the_newest_attempts_problems_count(tmp_path: Path) -> None:
    for n in (1, 2):
        (tmp_path / "attempts" / str(n)).mkdir(parents=True)
    layout.launcher_problem(str(tmp_path), 1, "node1").write_text("old trouble\n")
    job = failed_job(tmp_path, attempts=[{"number": 1}, {"number": 2}])
    assert jobs.with_launcher_problems([job])[0]["problem"] == ""


def test_an_unreadable_job_directory_shows_no_problem() -> None:
    assert jobs.with_launcher_problems([failed_job(Path("/nonexistent/job"))])[0]["problem"] == ""
