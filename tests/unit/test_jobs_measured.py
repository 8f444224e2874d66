"""What a job measured, read from its progress lines: configurations, weighted step times, noise,
batch limits; old-format lines; bad values named, not fatal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcsched.jobs.measured import Configuration, configuration, measure
from hpcsched.jobs.progress import parse_lines
from hpcsched.models import BatchLimits, GradientNoise

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "progress"


def fixture(name: str) -> list[dict[str, Any]]:
    return parse_lines((FIXTURES / name).read_text())


def line(event: str = "step", step: int = 10, step_time: float | None = 0.1, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "time": 1.0,
        "attempt": 1,
        "event": event,
        "step": step,
        "step_time": step_time,
        "world_size": 4,
        "global_batch": 128,
        "nodes": 1,
        "local_batch": 32,
        "accum_steps": 0,
    }
    return {**record, **fields}


def test_the_adaptive_fixture_gives_one_observation_per_configuration() -> None:
    m = measure(fixture("adaptive.jsonl"))
    assert [(s.config.num_nodes, s.config.num_replicas, s.config.local_bsz, s.config.accum_steps) for s in m.step_times] == [
        (1, 4, 32, 0),
        (1, 4, 64, 0),
        (2, 8, 32, 0),
        (2, 8, 64, 0),
        (2, 8, 64, 1),
    ]
    # warm-up steps after every start and switch are not timed: 8 lines of 10 minus 3 warm-up steps
    assert m.step_times[0].timed_steps == 77
    assert m.current == Configuration(2, 8, 64, 1) and m.current.global_bsz == 1024
    assert m.noise == GradientNoise(grad_sqr=0.5, grad_var=2400.0)
    assert m.limits == BatchLimits(min_global_bsz=128, max_global_bsz=2048, max_local_bsz=64, max_accum_steps=3)
    assert m.adaptive and m.problems == ()


def test_step_time_is_weighted_by_the_steps_each_line_timed() -> None:
    m = measure(
        [
            line(step=10, step_time=0.1, timed_steps=1),
            line(step=20, step_time=0.2, timed_steps=3),
            line(step=30, step_time=9.0, timed_steps=0),
            line(step=40, step_time=None, timed_steps=5),
        ]
    )
    (only,) = m.step_times
    assert only.step_time == pytest.approx(0.175) and only.timed_steps == 4


def test_cpu_wait_is_weighted_like_the_step_time_and_gives_the_share_of_wall_time_waited() -> None:
    m = measure(
        [
            line(step=10, step_time=0.1, timed_steps=1, cpu_wait=0.4),
            line(step=20, step_time=0.1, timed_steps=3, cpu_wait=0.0),
            line(step=30, step_time=0.1, timed_steps=4),  # a line from before the runtime reported it
            line(step=40, step_time=0.1, timed_steps=2, cpu_wait=-1.0),  # impossible: counts as none
        ]
    )
    (only,) = m.step_times
    assert only.step_time == pytest.approx(0.1) and only.cpu_wait == pytest.approx(0.04)
    assert m.cpu_wait_share == pytest.approx(0.4 / 1.4)
    assert measure([line(timed_steps=5)]).cpu_wait_share == 0.0


def test_only_step_lines_time_steps_but_every_line_sets_the_current_configuration() -> None:
    m = measure(
        [
            line(step_time=0.1, timed_steps=10),
            line("adapt", step=10, step_time=0.5, local_batch=64, global_batch=256, timed_steps=10),
        ]
    )
    assert [s.config.local_bsz for s in m.step_times] == [32]
    assert m.current == Configuration(1, 4, 64, 0)


def test_old_format_lines_take_defaults_and_weigh_by_the_step_difference() -> None:
    m = measure(fixture("old-format.jsonl"), nodes_by_attempt={2: 2})
    assert [(s.config, s.timed_steps) for s in m.step_times] == [
        (Configuration(1, 2, 32, 0), 80),
        (Configuration(2, 4, 32, 0), 80),
    ]
    assert m.noise is None and not m.adaptive
    assert m.limits == BatchLimits(min_global_bsz=128, max_global_bsz=128, max_local_bsz=128, max_accum_steps=0)


def test_step_difference_is_per_attempt_and_a_first_line_counts_once() -> None:
    old = [
        {"time": 1.0, "attempt": a, "event": "step", "step": s, "step_time": t, "world_size": 1, "global_batch": 8}
        for a, s, t in ((1, 5, 0.3), (1, 15, 0.1), (2, 12, 0.2))
    ]
    m = measure(old)
    (only,) = m.step_times
    assert only.timed_steps == 1 + 10 + 1
    assert only.step_time == pytest.approx((0.3 + 1.0 + 0.2) / 12)


def test_missing_nodes_default_to_one_or_the_attempts_count_but_never_above_the_ranks() -> None:
    record = {"global_batch": 64, "world_size": 2}
    assert configuration(record) == Configuration(1, 2, 32, 0)
    assert configuration(record, attempt_nodes=2) == Configuration(2, 2, 32, 0)
    assert configuration(record, attempt_nodes=3) == Configuration(2, 2, 32, 0)
    assert configuration({"global_batch": 64}, attempt_nodes=2) == Configuration(2, 2, 32, 0)
    assert configuration({"world_size": 2}) is None


def test_bad_values_leave_the_line_out_and_are_named_once_with_a_count() -> None:
    m = measure([line(step=10), line(step=20, nodes=8), line(step=30, nodes=8), line(step=40, local_batch="32")])
    assert [s.timed_steps for s in m.step_times] == [1]  # the one good line, first of its attempt
    assert m.problems == (
        "nodes=8 is more than world_size=4 (2 lines, first at attempt 1 step 20)",
        "local_batch='32' is not an integer >= 1 (1 line, first at attempt 1 step 40)",
    )


def test_noise_is_the_newest_estimate_clipped_at_zero_and_none_without_one() -> None:
    assert measure([line()]).noise is None
    assert measure([line(grad_sqr=0.0, grad_var=0.0)]).noise is None
    newest = measure([line(grad_sqr=1.0, grad_var=50.0), line(grad_sqr=-0.01, grad_var=80.0), line(grad_sqr=None)])
    assert newest.noise == GradientNoise(grad_sqr=0.0, grad_var=80.0)
    bad = measure([line(grad_sqr=1.0, grad_var=50.0), line(grad_sqr=float("nan"), grad_var=80.0)])
    assert bad.noise == GradientNoise(grad_sqr=1.0, grad_var=50.0)
    assert bad.problems == ("grad_sqr=nan, grad_var=80.0 are not finite numbers (1 line, first at attempt 1 step 10)",)


def test_a_fixed_batch_job_allows_only_its_batch_even_when_it_reports_limits() -> None:
    m = measure([line(adaptive=False, base_batch=64, max_batch=1024)])
    assert m.limits is not None and (m.limits.min_global_bsz, m.limits.max_global_bsz) == (128, 128)


def test_an_adaptive_maximum_below_its_base_is_named_and_the_batch_held_at_the_base() -> None:
    m = measure([line(adaptive=True, base_batch=128, max_batch=64)])
    assert m.limits is not None and (m.limits.min_global_bsz, m.limits.max_global_bsz) == (128, 128)
    assert m.problems == ("max_batch=64 is below base_batch=128; the batch is held at base_batch",)


def test_per_node_view_makes_each_node_one_replica() -> None:
    m = measure(fixture("adaptive.jsonl")).per_node()
    assert [(s.config.num_nodes, s.config.num_replicas, s.config.local_bsz) for s in m.step_times][-1] == (2, 2, 256)
    assert m.current == Configuration(2, 2, 256, 1)
    assert m.limits is not None and m.limits.max_local_bsz == 64 * 4
    assert [o.global_bsz for o in m.observations()] == [o.global_bsz for o in measure(fixture("adaptive.jsonl")).observations()]


def test_no_lines_measure_nothing() -> None:
    m = measure([])
    assert (m.step_times, m.current, m.limits, m.noise) == ((), None, None, None)
    assert m.per_node() == m
