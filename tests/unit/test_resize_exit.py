"""An intended stop at a checkpoint (a resize) is no failure: under hpcsched's launcher the ranks
exit 0, so torchrun prints no ChildFailedError, and the step ends 0, so Slurm records no FAILED 75
step; the checkpointed marker tells the driver, which resizes as before (issue 14, item 8)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_daemon_driver import SLURM_ID, Allocation, Step
from test_dry_run_unit import NODE_ENV
from test_runtime_trainer import env_for, make_trainer, run_until_stop

from hpcsched.jobs import layout
from hpcsched.launcher.container import NodeContext, parse_launch_args, podman_run_argv
from hpcsched.launcher.driver import Driver
from hpcsched.runtime import EXIT_CHECKPOINTED


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "job").mkdir()
    return tmp_path / "job"


def test_a_rank_stopped_at_a_checkpoint_under_the_launcher_exits_0_and_leaves_the_marker(job: Path) -> None:
    trainer = make_trainer({**env_for(job, 1), "HPCSCHED_CHECKPOINTED_EXIT": "0"}, checkpoint_every=None)
    assert run_until_stop(trainer, 3, [], signal_at=2) == 0
    assert json.loads((job / "attempts" / "1" / "checkpointed").read_text())["step"] == 2


def test_a_rank_stopped_at_a_checkpoint_elsewhere_still_exits_75(job: Path) -> None:
    trainer = make_trainer(env_for(job, 1), checkpoint_every=None)
    assert run_until_stop(trainer, 3, [], signal_at=2) == EXIT_CHECKPOINTED


def test_the_launcher_tells_the_ranks_to_exit_0_at_a_checkpoint() -> None:
    spec = parse_launch_args(["--job-id", "5", "--job-dir", "/j", "--image", "img", "--workdir", "/w", "t.py"], {})
    argv = podman_run_argv(spec, NodeContext.from_env(NODE_ENV), [])
    assert "HPCSCHED_CHECKPOINTED_EXIT=0" in argv


def test_a_step_that_ended_0_at_a_checkpoint_is_resized_in_place(tmp_path: Path) -> None:
    job_dir = str(tmp_path)
    marker = layout.checkpointed_marker(job_dir, 1)

    def checkpoint() -> None:  # the runtime writes the marker while the step runs
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")

    a = Allocation(job_dir, [Step(rc=0, polls=1), Step(rc=0)], on_sleep=checkpoint)
    layout.write_json(layout.resize_request(job_dir), {"mode": "shrink", "nodes": 1})
    assert a.run() == 0
    assert a.slurm.called("scontrol", "update", f"JobId={SLURM_ID}", "NumNodes=1")
    end = a.record(1, "end.json")
    assert end is not None and (end["exit_code"], end["outcome"]) == (EXIT_CHECKPOINTED, "resize")
    assert a.record(2, "end.json")["outcome"] == "completed"  # type: ignore[index]


def test_a_step_that_ended_0_without_the_marker_completed(tmp_path: Path) -> None:
    a = Allocation(str(tmp_path), [Step(rc=0)])
    assert a.run() == 0
    assert a.record(1, "end.json")["outcome"] == "completed"  # type: ignore[index]


def test_shrink_in_place_leaves_no_resize_scripts_in_the_work_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scontrol update NumNodes writes them where it runs: the batch script's work directory."""
    work, job_dir = tmp_path / "work", tmp_path / "job"
    work.mkdir()
    job_dir.mkdir()
    monkeypatch.chdir(work)
    a = Allocation(str(job_dir), [Step(rc=EXIT_CHECKPOINTED), Step(rc=0)])

    def slurm(argv: list[str], **kwargs: Any) -> Any:
        if argv[:2] == ["scontrol", "update"]:
            for suffix in ("sh", "csh"):
                (work / f"slurm_job_{SLURM_ID}_resize.{suffix}").write_text("export SLURM_NNODES=1\n")
        return a.slurm(argv, **kwargs)

    layout.write_json(layout.resize_request(str(job_dir)), {"mode": "shrink", "nodes": 1})
    driver = Driver(5, str(job_dir), ["python", "-m", "hpcsched.launcher"], io.StringIO(), slurm_job_id=str(SLURM_ID),
                    slurm=slurm, start_step=a.start_step, clock=a.slurm.clock, sleep=a.sleep)  # type: ignore[arg-type]
    assert driver.run("submit") == 0
    assert a.slurm.called("scontrol", "update", f"JobId={SLURM_ID}", "NumNodes=1")
    assert list(work.iterdir()) == []
    kept = layout.attempt_dir(str(job_dir), 1)
    assert (kept / f"slurm_job_{SLURM_ID}_resize.sh").read_text() == "export SLURM_NNODES=1\n"


def test_the_launcher_and_the_planner_import_without_torch() -> None:
    """The launcher's Python on the nodes has no torch (the training image has)."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import hpcsched.launcher.__main__, hpcsched.launcher.driver, hpcsched.planning.dry_run")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
