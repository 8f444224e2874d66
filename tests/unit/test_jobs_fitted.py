"""The model ``hpcsched model`` shows: fitted to a job's progress lines, it predicts configurations
it was not fitted to, and says what it cannot know (one configuration, no noise, no data)."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from hpcsched.jobs.fitted import NotMeasured, model_report
from hpcsched.jobs.measured import Configuration, measure
from hpcsched.jobs.progress import parse_lines
from hpcsched.models import GradientNoise, ThroughputParams, predict_step_time, statistical_efficiency

PARAMS = ThroughputParams(alpha_c=0.015, beta_c=0.0009, alpha_n=0.06, beta_n=0.008, alpha_r=0.01, beta_r=0.002, gamma=1.6)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "progress"
GRID = [
    Configuration(n, n * p, local, accum)
    for n, p, local, accum in itertools.product((1, 2, 4), (1, 4), (16, 32, 64, 128), (0, 1))
]


def step_lines(configs: list[Configuration], seed: int = 0, **fields: Any) -> list[dict[str, Any]]:
    """One attempt per configuration, three step lines each with +-3% timing noise."""
    rng = random.Random(seed)
    out = []
    for attempt, c in enumerate(configs, 1):
        true = float(predict_step_time(PARAMS, c.num_nodes, c.num_replicas, c.local_bsz, c.accum_steps))
        for i in range(3):
            out.append(
                {
                    "time": float(attempt),
                    "attempt": attempt,
                    "event": "step",
                    "step": 10 * (i + 1),
                    "step_time": true * rng.uniform(0.97, 1.03),
                    "timed_steps": 10,
                    "nodes": c.num_nodes,
                    "world_size": c.num_replicas,
                    "local_batch": c.local_bsz,
                    "accum_steps": c.accum_steps,
                    "global_batch": c.global_bsz,
                    **fields,
                }
            )
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_predictions_on_held_out_configurations_are_within_ten_percent(seed: int) -> None:
    configs = GRID.copy()
    random.Random(seed).shuffle(configs)
    fitted, held_out = configs[: len(configs) // 2], configs[len(configs) // 2 :]
    report = model_report(measure(step_lines(fitted, seed)), max_nodes=4)
    assert all(abs(f.error_pct) < 10 for f in report.fits)
    for c in held_out:
        predicted = float(predict_step_time(report.params, c.num_nodes, c.num_replicas, c.local_bsz, c.accum_steps))
        true = float(predict_step_time(PARAMS, c.num_nodes, c.num_replicas, c.local_bsz, c.accum_steps))
        assert predicted == pytest.approx(true, rel=0.10), c


def test_the_adaptive_fixture_report_uses_the_measured_noise_and_the_jobs_limits() -> None:
    report = model_report(measure(parse_lines((FIXTURES / "adaptive.jsonl").read_text())), max_nodes=4)
    assert len(report.fits) == 5 and all(abs(f.error_pct) < 10 for f in report.fits)
    assert report.procs_per_node == 4 and [p.num_replicas for p in report.predictions] == [4, 8, 12, 16]
    noise = GradientNoise(grad_sqr=0.5, grad_var=2400.0)
    assert report.noise_scale == pytest.approx(4800.0)
    assert report.efficiency == pytest.approx(float(statistical_efficiency(noise, 1024, 128)))
    for p in report.predictions:
        assert p.best is not None and 128 <= p.best.global_bsz <= 2048
        assert p.best.local_bsz <= 64 and p.best.accum_steps <= 3
        assert p.speedup is not None and p.speedup > 1
    assert report.notes == ()


def test_without_noise_efficiency_is_unknown_and_the_best_batch_is_the_smallest_allowed() -> None:
    lines = step_lines(GRID[:8], adaptive=True, base_batch=64, max_batch=4096)
    report = model_report(measure(lines), max_nodes=2)
    assert report.noise is None and report.efficiency is None and report.noise_scale is None
    assert any("no gradient noise reported" in n for n in report.notes)
    assert [p.best.global_bsz for p in report.predictions if p.best] == [64, 64]


def test_one_configuration_still_fits_through_the_prior_and_says_so() -> None:
    report = model_report(measure(step_lines([Configuration(1, 1, 32, 0)])), max_nodes=2)
    assert len(report.fits) == 1 and abs(report.fits[0].error_pct) < 5
    assert any(n.startswith("only one configuration measured") for n in report.notes)
    assert any(n.startswith("fixed batch size") for n in report.notes)
    assert [p.best.global_bsz for p in report.predictions if p.best] == [32, 32]


def test_a_fixed_batch_that_does_not_divide_among_the_ranks_has_no_configuration_there() -> None:
    report = model_report(measure(step_lines([Configuration(1, 2, 32, 0)])), max_nodes=3, procs_per_node=1)
    assert [p.best is not None for p in report.predictions] == [True, True, False]
    assert report.predictions[2].speedup == 0.0


def test_a_job_that_does_not_fit_on_one_gpu_has_no_speedup_but_still_a_best_configuration() -> None:
    lines = step_lines([Configuration(1, 4, 32, 0)], adaptive=True, base_batch=128, max_batch=128, max_local_batch=32)
    report = model_report(measure(lines), max_nodes=2)
    assert [p.speedup for p in report.predictions] == [None, None]
    assert report.predictions[0].best is not None and report.predictions[0].best.local_bsz == 32
    assert any("does not fit on one GPU" in n for n in report.notes)


def test_a_job_that_waited_for_cpus_others_held_is_fitted_on_its_own_time_and_told_so() -> None:
    configs = GRID[:8]
    waited = [{**r, "cpu_wait": 2.0 * r["step_time"]} for r in step_lines(configs)]  # 2/3 of the wall time
    report = model_report(measure(waited), max_nodes=2)
    assert report.params == model_report(measure(step_lines(configs)), max_nodes=2).params
    assert any(n.startswith("the job waited for a CPU that other processes held during 67%") for n in report.notes)
    assert report.as_dict()["configurations"][0]["cpu_wait"] > 0
    little = [{**r, "cpu_wait": 0.05 * r["step_time"]} for r in step_lines(configs)]
    assert not any("waited for a CPU" in n for n in model_report(measure(little), max_nodes=2).notes)


@pytest.mark.parametrize(
    "lines",
    [[], [{"time": 1.0, "attempt": 1, "event": "start", "step": 0, "world_size": 2, "global_batch": 64, "step_time": None}]],
)
def test_no_step_time_is_an_error_that_says_so(lines: list[dict[str, Any]]) -> None:
    with pytest.raises(NotMeasured, match="no step times measured yet"):
        model_report(measure(lines), max_nodes=2)


def test_the_json_form_is_strict_json_with_every_part() -> None:
    report = model_report(measure(parse_lines((FIXTURES / "adaptive.jsonl").read_text())), max_nodes=3)
    data = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert set(data) == {
        "params",
        "param_units",
        "configurations",
        "predictions",
        "current",
        "limits",
        "procs_per_node",
        "noise",
        "notes",
    }
    assert data["param_units"]["beta_c"] == "s/sample"
    assert data["configurations"][0]["timed_steps"] == 77
    assert data["predictions"][1]["best"]["goodput"] > 0
    assert data["noise"]["measured"] and data["current"]["global_bsz"] == 1024
