"""benchmarks/gpu_device_check.py, the parts a machine without a GPU can check: it refuses clearly,
reads what its attempts report, judges the results and writes them with the device's name."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchmark_loader import load_benchmark


@pytest.fixture(scope="module")
def check() -> ModuleType:
    return load_benchmark("gpu_device_check")


def attempt(n: int, device: str, backend: str, code: int, resumed: int | None, step: int | None = None) -> dict[str, Any]:
    return {"attempt": n, "exit_code": code, "seconds": 1.0, "device": device, "backend": backend, "resumed_at": resumed,
            **({"end": {"step": step}} if step is not None else {})}


PASSING: dict[str, Any] = {
    "device_name": "NVIDIA H100 80GB HBM3", "rehearsal": False, "torch": "2.13.0", "cuda": "12.8", "python": "3.11.2",
    "time": "2026-12-05T00:00:00Z", "commit": "abc1234",
    "checks": {
        "elastic": {"attempts": [attempt(1, "cuda:0", "nccl", 0, None, 40)], "step_time_s": {"attempt 1, batch 64": 0.004},
                    "adapt": []},
        "stop_resume": {"attempts": [attempt(1, "cuda:0", "nccl", 75, None), attempt(2, "cpu", "gloo", 75, 15),
                                     attempt(3, "cuda:0", "nccl", 0, 25, 40)], "step_time_s": {}, "adapt": []},
        "adaptive": {"attempts": [attempt(1, "cuda:0", "nccl", 0, None, 300)], "step_time_s": {},
                     "adapt": [{"step": 0, "global_batch": 64, "local_batch": 64, "accum_steps": 0, "reason": "initial",
                                "predicted_step_time": None},
                               {"step": 10, "global_batch": 128, "local_batch": 128, "accum_steps": 0, "reason": "explore",
                                "predicted_step_time": 0.0051}]},
    },
}


def test_without_cuda_it_refuses_and_writes_nothing(check: ModuleType, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--out", str(tmp_path)]) == 2  # this machine's torch has no CUDA
    assert "no CUDA GPU here" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_refusal_names_the_torch_build(check: ModuleType) -> None:
    assert "built without CUDA" in check.cuda_refusal(False, "2.13.0+cpu", None)
    assert "built with CUDA 12.8" in check.cuda_refusal(False, "2.13.0", "12.8")
    assert check.cuda_refusal(True, "2.13.0", "12.8") is None


def test_worker_reports_are_read_from_its_output(check: ModuleType) -> None:
    output = 'hpcsched: resumed\nRESULT {"what": "start", "device": "cuda:0"}\nnoise\nRESULT {"what": "end", "step": 40}\n'
    assert check.parse_reports(output) == {"start": {"device": "cuda:0"}, "end": {"step": 40}}


def test_step_times_are_averaged_per_attempt_and_batch(check: ModuleType) -> None:
    lines = [{"event": "step", "attempt": 1, "global_batch": 64, "step_time": 0.002, "timed_steps": 3},
             {"event": "step", "attempt": 1, "global_batch": 64, "step_time": 0.006, "timed_steps": 1},
             {"event": "adapt", "step": 10, "global_batch": 128, "local_batch": 128, "accum_steps": 0, "reason": "explore",
              "predicted_step_time": 0.005},
             {"event": "step", "attempt": 1, "global_batch": 128, "step_time": None, "timed_steps": 0}]
    summary = check.progress_summary(lines)
    assert summary["step_time_s"] == {"attempt 1, batch 64": pytest.approx(0.003)}
    assert [a["global_batch"] for a in summary["adapt"]] == [128]


def test_expected_results_pass_and_write_the_device_name(check: ModuleType) -> None:
    assert check.problems(PASSING, "cuda") == []
    text = check.markdown({**PASSING, "problems": []})
    assert text.startswith("# The runtime library on a GPU: NVIDIA H100 80GB HBM3")
    assert "all checks passed" in text and "| stop_resume | 2 | cpu | gloo | 75 | 15 |" in text
    json.dumps(PASSING)


def test_a_resume_that_stayed_on_the_gpu_or_started_afresh_is_a_problem(check: ModuleType) -> None:
    results = copy.deepcopy(PASSING)
    results["checks"]["stop_resume"]["attempts"][1].update(device="cuda:0", backend="nccl")
    results["checks"]["stop_resume"]["attempts"][2]["resumed_at"] = None
    found = check.problems(results, "cuda")
    assert len(found) == 2 and all(p.startswith("stop_resume attempt") for p in found)
    assert check.problems(PASSING, "cpu")  # a rehearsal's expectations differ: GPU results fail them
