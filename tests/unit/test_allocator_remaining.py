"""The remaining-work estimate: what the allocator is told instead of the truth."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsched.allocator import UNDECLARED_PRIOR_S, GoodputModel, estimate_remaining_work, undeclared_prior
from hpcsched.allocator.candidates import goodput_at
from hpcsched.models import BatchLimits, GradientNoise, ThroughputParams

SCALES = GoodputModel(
    ThroughputParams(0.05, 0.002, 0.08, 0.002, 0.02, 0.001, 1.5), GradientNoise(1.0, 4000.0), BatchLimits(64, 4096, 256, 3)
)


def test_a_declared_total_leaves_planned_minus_done() -> None:
    assert estimate_remaining_work(3e6, 5e6) == 2e6
    assert estimate_remaining_work(0.0, 5e6, prior=1e9) == 5e6  # the prior is only for undeclared jobs


def test_a_job_past_its_declared_total_is_not_taken_for_finished() -> None:
    """Its declaration was wrong: least attained service over the work past it, at least the prior."""
    assert estimate_remaining_work(5e6, 5e6, prior=1e5) == 0.0  # exactly at the plan: done
    assert estimate_remaining_work(5.01e6, 5e6, prior=1e5) == 1e5
    assert estimate_remaining_work(6e6, 5e6, prior=1e5) == 1e6


def test_an_undeclared_job_needs_as_much_again_as_it_has_done_and_at_least_the_prior() -> None:
    assert estimate_remaining_work(0.0, prior=1e5) == 1e5
    assert estimate_remaining_work(4e6, prior=1e5) == 4e6


@pytest.mark.parametrize(
    ("done", "planned", "prior"),
    [
        (-1.0, None, 0.0),
        (1.0, -1.0, 0.0),
        (1.0, None, -1.0),
        (float("inf"), None, 0.0),
        (1.0, float("nan"), 0.0),
        (1.0, float("inf"), 0.0),
    ],
)
def test_impossible_reports_are_rejected(done: float, planned: float | None, prior: float) -> None:
    with pytest.raises(ValueError):
        estimate_remaining_work(done, planned, prior=prior)


def test_estimates_are_monotone_in_the_work_done() -> None:
    """Seeded: with a plan, more work done never leaves more until the plan is done; without
    one (least attained service), and past the plan, more work done never predicts less."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        planned, prior = float(rng.uniform(0, 1e7)), float(rng.uniform(0, 1e6))
        low, high = sorted(float(x) for x in rng.uniform(0, 2e7, size=2))
        if high <= planned:
            assert 0.0 <= estimate_remaining_work(high, planned) <= estimate_remaining_work(low, planned) <= planned
            assert estimate_remaining_work(low, planned) + low == pytest.approx(planned)
        elif low > planned:
            past = [estimate_remaining_work(done, planned, prior=prior) for done in (low, high)]
            assert prior <= past[0] <= past[1]
        assert prior <= estimate_remaining_work(low, prior=prior) <= estimate_remaining_work(high, prior=prior)


def test_the_undeclared_prior_is_the_work_of_half_an_hour_on_the_minimum() -> None:
    assert undeclared_prior(SCALES, 2, 4) == pytest.approx(UNDECLARED_PRIOR_S * goodput_at(SCALES, 4, 2))
    assert undeclared_prior(SCALES, 2, 4, seconds=60.0) == pytest.approx(60.0 * goodput_at(SCALES, 4, 2))
    assert undeclared_prior(SCALES, 4, 4) > undeclared_prior(SCALES, 1, 4)
