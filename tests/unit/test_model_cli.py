"""``hpcsched model`` in process (click's CliRunner) with a fake daemon that knows one job whose
directory holds a recorded progress.jsonl."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hpcsched.cli.main import cli
from hpcsched.daemon import client
from hpcsched.errors import JobNotFound

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "progress"
PNG = b"\x89PNG\r\n\x1a\n"


def status_entry(job_dir: Path, nodes: str = "1-4") -> dict[str, Any]:
    attempts = [{"number": 1, "nodes": 1, "state": "STOPPED"}, {"number": 2, "nodes": 2, "state": "RUNNING"}]
    return {
        "id": 7,
        "name": "bert",
        "state": "RUNNING",
        "job_dir": str(job_dir),
        "attempts": attempts,
        "request": {"nodes": nodes, "procs_per_node": 4},
    }


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A daemon that answers ``status`` for job 7 only; the job directory holds adaptive.jsonl."""
    job_dir = tmp_path / "jobs" / "7"
    job_dir.mkdir(parents=True)
    shutil.copy(FIXTURES / "adaptive.jsonl", job_dir / "progress.jsonl")
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(tmp_path / "jobs"))
    fake: dict[str, Any] = {"job": status_entry(job_dir), "calls": []}

    def call(settings: Any, op: str, args: dict[str, Any] | None = None, timeout: float = 120.0) -> Any:
        fake["calls"].append((op, args))
        assert op == "status"
        if (args or {}).get("job") != 7:
            raise JobNotFound(f"no job {(args or {}).get('job')}")
        return [fake["job"]]

    monkeypatch.setattr(client, "ensure_daemon", lambda settings: {"pid": 1})
    monkeypatch.setattr(client, "call", call)
    return fake


def model(*args: str) -> Result:
    return CliRunner().invoke(cli, ["model", *args])


def test_text_output_shows_parameters_fit_predictions_and_noise(daemon: dict[str, Any]) -> None:
    result = model("7")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Job 7 (bert): step-time model fitted to 5 configurations (")
    assert "beta_c" in out and "ms/sample" in out and "gamma" in out
    assert "MEASURED" in out and "PREDICTED" in out and "ERROR" in out
    assert "global batch 128-2048, local batch <= 64, accumulation <= 3" in out
    predictions = out[out.index("Predicted best configuration") :].splitlines()[2:6]
    assert [row.split()[:2] for row in predictions] == [["1", "4"], ["2", "8"], ["3", "12"], ["4", "16"]]  # --nodes 1-4
    assert predictions[1].split()[2].endswith("x") and predictions[1].split()[-1] == "now"
    assert "Gradient noise: scale 4,800 samples; statistical efficiency" in out
    assert daemon["calls"] == [("status", {"job": 7})]


def test_json_is_one_object_with_every_part(daemon: dict[str, Any]) -> None:
    result = model("7", "--json", "--max-nodes", "6")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["job"], data["name"]) == (7, "bert")
    assert [p["num_nodes"] for p in data["predictions"]] == [1, 2, 3, 4, 5, 6]
    assert len(data["configurations"]) == 5 and data["noise"]["noise_scale"] == pytest.approx(4800.0)
    assert data["params"]["gamma"] >= 1


def test_plot_writes_a_png(daemon: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "model.png"
    result = model("7", "--plot", str(path))
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000
    assert f"wrote {path}" in result.stderr


def test_plot_of_a_job_that_does_not_fit_on_one_gpu_still_writes_a_png(daemon: dict[str, Any], tmp_path: Path) -> None:
    progress = Path(daemon["job"]["job_dir"]) / "progress.jsonl"
    lines = [json.loads(t) for t in progress.read_text().splitlines()]
    progress.write_text(
        "".join(json.dumps({**r, "max_accum_steps": 0, "accum_steps": 0, "max_batch": 128}) + "\n" for r in lines[:20])
    )
    path = tmp_path / "model.png"
    result = model("7", "--plot", str(path))
    assert result.exit_code == 0, result.output
    assert "does not fit on one GPU" in result.stdout
    assert path.read_bytes().startswith(PNG)


def test_default_max_nodes_is_the_fixed_node_count_without_a_range(daemon: dict[str, Any]) -> None:
    daemon["job"]["request"]["nodes"] = "2"
    assert [p["num_nodes"] for p in json.loads(model("7", "--json").stdout)["predictions"]] == [1, 2]
    del daemon["job"]["request"]["nodes"]
    assert len(json.loads(model("7", "--json").stdout)["predictions"]) == 8


def test_old_format_progress_takes_node_counts_from_the_attempts(daemon: dict[str, Any]) -> None:
    shutil.copy(FIXTURES / "old-format.jsonl", Path(daemon["job"]["job_dir"]) / "progress.jsonl")
    data = json.loads(model("7", "--json").stdout)
    assert [(c["num_nodes"], c["num_replicas"]) for c in data["configurations"]] == [(1, 2), (2, 4)]
    assert any("no gradient noise reported" in n for n in data["notes"])
    assert data["noise"]["efficiency"] is None


def test_a_job_without_step_times_is_an_error(daemon: dict[str, Any]) -> None:
    (Path(daemon["job"]["job_dir"]) / "progress.jsonl").unlink()
    result = model("7")
    assert result.exit_code == 1
    assert result.stderr == "hpcsched: error: job 7: no step times measured yet\n"


def test_an_unknown_job_is_an_error(daemon: dict[str, Any]) -> None:
    result = model("8")
    assert result.exit_code == 1 and result.stderr == "hpcsched: error: no job 8\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--plot", "model.pdf"], "--plot: model.pdf does not end in .png"),
        (["--plot", "/nonexistent/dir/model.png"], "--plot: the directory /nonexistent/dir does not exist"),
        (["--max-nodes", "0"], "'--max-nodes': 0 is not in the range 1<=x<=4096"),
    ],
)
def test_bad_options_are_refused_before_asking_the_daemon(daemon: dict[str, Any], args: list[str], expected: str) -> None:
    result = model("7", *args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert daemon["calls"] == []


def test_help_reads_like_a_man_page_with_examples() -> None:
    result = CliRunner().invoke(cli, ["model", "--help"])
    assert result.exit_code == 0
    assert "Usage: cli model [OPTIONS] JOB" in result.stdout or "Usage: hpcsched model" in result.stdout
    assert "Examples:" in result.stdout and "hpcsched model 12 --plot bert-model.png" in result.stdout
    assert "model" in CliRunner().invoke(cli, ["--help"]).stdout
