"""The admission pass between rounds: it shrinks running jobs for a waiting one only when that
lowers the summed completion time (:func:`hpcsched.allocator.admission`)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from hpcsched.allocator import (
    HPCSCHED,
    Allocation,
    Cluster,
    Decision,
    ElasticJob,
    GoodputModel,
    RestartCost,
    admission,
    admission_pays,
    allocate,
)
from hpcsched.allocator.admission import shrink_loss, unpaid_admissions
from hpcsched.allocator.candidates import goodput_at
from hpcsched.models import BatchLimits, GradientNoise, ThroughputParams


def decision(key: str, current: int, target: int, old_s: float, new_s: float, cost_s: float) -> Decision:
    """A decision for a job predicted to need ``old_s`` more at ``current`` and ``new_s`` at ``target``."""
    return Decision(key, current, target, (), old_s - new_s, cost_s if target != current else 0.0, "", new_s)


def newcomer(key: str, size: int = 1) -> Decision:
    return Decision(key, 0, size, (), math.inf, 20.0, "", 600.0)


def held(allocation: Allocation, idle: int) -> set[str]:
    return unpaid_admissions(allocation, idle, set())


def test_shrinking_a_short_job_for_a_newcomer_does_not_pay() -> None:
    """The mixed local workload's case: a 2-node job with 50 s left (90 s on one node) would be
    shrunk, at a 25 s restart, for a newcomer that otherwise waits 50 s for the job to end. The
    newcomer starts 25 s sooner (after the shrink's pause); the job loses 25 s + 50 * (1 - 50/90)."""
    shrunk = decision("short", 2, 1, 50.0, 90.0, 25.0)
    allocation = Allocation((shrunk, newcomer("new")), 0.0, None, next_free_s=50.0)
    assert shrink_loss(shrunk, 50.0) == pytest.approx(25.0 + 50.0 * (1 - 50 / 90))
    assert not admission_pays(allocation, {"short": 1}, idle=0)
    assert held(allocation, idle=0) == {"new"}


def test_shrinking_a_long_job_for_a_newcomer_pays() -> None:
    """16 -> 15 GPUs for a job with hours left costs its 30 s restart and 1/16 of its pace for the
    600 s the newcomer would otherwise wait; the newcomer gains 570 s."""
    shrunk = decision("long", 16, 15, 10_000.0, 10_000.0 * 16 / 15, 30.0)
    allocation = Allocation((shrunk, newcomer("new")), 0.0, None, next_free_s=600.0)
    assert shrink_loss(shrunk, 600.0) == pytest.approx(30.0 + 600.0 / 16)
    assert held(allocation, idle=0) == set()
    assert admission(allocation, idle=0) == {"long": 15}


def test_stopping_a_job_costs_all_of_the_wait() -> None:
    stopped = Decision("stop", 1, 0, (), -math.inf, 10.0, "", math.inf)
    assert shrink_loss(stopped, 300.0) == pytest.approx(310.0)
    allocation = Allocation((stopped, newcomer("new")), 0.0, None, next_free_s=300.0)
    assert held(allocation, idle=0) == {"new"}, "the newcomer gains 290 s, the stopped job loses 310 s"


def test_newcomers_that_fit_in_idle_gpus_do_not_count_as_gains() -> None:
    """Two newcomers, one fits the idle GPU: only the other one's wait is spared by the shrink."""
    shrunk = decision("mid", 4, 3, 1_000.0, 1_000.0 * 4 / 3, 30.0)
    allocation = Allocation((shrunk, newcomer("a"), newcomer("b")), 0.0, None, next_free_s=100.0)
    # b gains 100 - 30 = 70 s; mid loses 30 + 100 * (1 - 3/4) = 55 s: pays, but not with a 60 s restart
    assert held(allocation, idle=1) == set()
    dear = decision("mid", 4, 3, 1_000.0, 1_000.0 * 4 / 3, 60.0)
    assert held(Allocation((dear, newcomer("a"), newcomer("b")), 0.0, None, next_free_s=100.0), idle=1) == {"b"}


def test_no_prediction_of_a_departure_leaves_the_decision_as_it_is() -> None:
    shrunk = decision("x", 2, 1, 50.0, 90.0, 25.0)
    assert held(Allocation((shrunk, newcomer("new")), 0.0, None), idle=0) == set()


SCALES = GoodputModel(ThroughputParams(0.05, 0.002, 0.08, 0.002, 0.02, 0.001, 1.5), GradientNoise(1.0, 4000.0),
                      BatchLimits(64, 4096, 256, 3))


def test_allocate_reports_remaining_times_and_the_next_departure() -> None:
    """What the admission check reads comes from the allocator: each decision's run left at its
    target (W / goodput) and the first running job's predicted end at its current size."""
    jobs = [
        ElasticJob(key="a", model=SCALES, min_gpus=1, max_gpus=8, current_gpus=4, remaining_work=2e6,
                   restart=RestartCost.fixed(30.0)),
        ElasticJob(key="b", model=SCALES, min_gpus=1, max_gpus=8, current_gpus=4, remaining_work=1e5,
                   restart=RestartCost.fixed(30.0)),
    ]
    allocation = allocate(Cluster(2, 4), jobs, HPCSCHED)
    for d, work in zip(allocation.decisions, (2e6, 1e5), strict=True):
        assert d.remaining_s == pytest.approx(work / goodput_at(SCALES, 4, d.target_gpus))
        assert d.as_dict()["remaining_s"] == pytest.approx(d.remaining_s)
    now = [work / goodput_at(SCALES, 4, 4) for work in (2e6, 1e5)]
    assert allocation.next_free_s == pytest.approx(min(now))


def test_a_short_newcomer_costs_the_shrunk_job_only_while_it_runs() -> None:
    """A one-minute newcomer would wait 600 s for a job to end; stopping a 1-GPU job for it costs
    that job its 10 s restart plus the 70 s the newcomer holds its GPU (start and run), not 600 s."""
    stopped = Decision("long", 1, 0, (), -math.inf, 10.0, "", math.inf)
    short = Decision("short", 0, 1, (), math.inf, 10.0, "", 60.0)
    allocation = Allocation((stopped, short), 0.0, None, next_free_s=600.0)
    assert held(allocation, idle=0) == set()
    slow = Decision("slow", 0, 1, (), math.inf, 10.0, "", 6000.0)
    assert held(Allocation((stopped, slow), 0.0, None, next_free_s=600.0), idle=0) == {"slow"}, "590 s gained, 610 s lost"
    assert unpaid_admissions(Allocation((stopped, slow), 0.0, None, next_free_s=600.0), 0, {"slow"}) == set(), "urgent"


def running_and_newcomer(newcomer_work: float, waited_s: float = 0.0) -> list[ElasticJob]:
    """Two GPUs held by a job with about 20 s left; a newcomer waits for one GPU."""
    ending = goodput_at(SCALES, 2, 2) * 20.0
    return [
        ElasticJob(key="ending", model=SCALES, min_gpus=1, max_gpus=2, current_gpus=2, remaining_work=ending,
                   time_at_size_s=600.0, age_s=600.0, time_in_state_s=600.0, restart=RestartCost.fixed(30.0)),
        ElasticJob(key="new", model=SCALES, min_gpus=1, max_gpus=2, current_gpus=0, remaining_work=newcomer_work,
                   time_in_state_s=waited_s, age_s=waited_s, restart=RestartCost.fixed(30.0)),
    ]


def test_allocate_leaves_a_long_newcomer_waiting_when_its_room_does_not_pay() -> None:
    """Shrinking the ending job costs it a 30 s restart to spare the newcomer a 20 s wait: the
    newcomer waits, and says why. Without the check (Pollux's way) it is admitted at once."""
    hour = goodput_at(SCALES, 2, 1) * 3600.0
    decisions = {d.key: d for d in allocate(Cluster(1, 2), running_and_newcomer(hour)).decisions}
    assert (decisions["ending"].target_gpus, decisions["new"].target_gpus) == (2, 0)
    assert decisions["new"].reason.startswith("waits: making room would cost the running jobs more")
    eager = dataclasses.replace(HPCSCHED, admission_pays=False)
    decisions = {d.key: d for d in allocate(Cluster(1, 2), running_and_newcomer(hour), eager).decisions}
    assert (decisions["ending"].target_gpus, decisions["new"].target_gpus) == (1, 1)


def test_short_and_starving_newcomers_are_admitted_even_when_their_room_does_not_pay() -> None:
    """A newcomer of a minute (below ``short_s``) or one that has waited ``starvation_s`` starts."""
    minute = goodput_at(SCALES, 2, 1) * 60.0
    hour = goodput_at(SCALES, 2, 1) * 3600.0
    for jobs in (running_and_newcomer(minute), running_and_newcomer(hour, waited_s=HPCSCHED.starvation_s)):
        decisions = {d.key: d for d in allocate(Cluster(1, 2), jobs).decisions}
        assert (decisions["ending"].target_gpus, decisions["new"].target_gpus) == (1, 1)


def crowded_cluster(newcomer_ran_before: bool) -> list[ElasticJob]:
    """Two GPUs held by two jobs with hours left, running for two hours; a third job waits for one
    GPU with the undeclared prior's half hour as its remaining work (it declared nothing yet)."""
    def long(key: str, hours: float) -> ElasticJob:
        return ElasticJob(key=key, model=SCALES, min_gpus=1, max_gpus=2, current_gpus=1,
                          remaining_work=goodput_at(SCALES, 2, 1) * hours * 3600.0, age_s=7200.0,
                          time_in_state_s=7200.0, time_at_size_s=7200.0, restart=RestartCost.fixed(30.0))
    prior = goodput_at(SCALES, 2, 1) * 1800.0
    new = ElasticJob(key="new", model=SCALES, min_gpus=1, max_gpus=2, current_gpus=0, remaining_work=prior,
                     age_s=120.0, time_in_state_s=120.0, restart=RestartCost.fixed(30.0), never_ran=not newcomer_ran_before)
    return [long("ten-hours", 10.0), long("five-hours", 5.0), new]


def test_in_a_crowded_cluster_a_job_that_never_ran_preempts_the_one_with_most_work_left() -> None:
    """More jobs than GPUs: the job that has had no GPU time starts in this round, and the job
    with the most work left makes room (least attained service). A job that ran before and waits
    again, or the Pollux-like preset, leaves it waiting for a departure (hours) or starvation."""
    decisions = {d.key: d for d in allocate(Cluster(1, 2), crowded_cluster(False)).decisions}
    assert {k: d.target_gpus for k, d in decisions.items()} == {"ten-hours": 0, "five-hours": 1, "new": 1}
    assert "never ran, admitted first where jobs outnumber GPUs" in decisions["new"].reason
    again = {d.key: d.target_gpus for d in allocate(Cluster(1, 2), crowded_cluster(True)).decisions}
    assert again["new"] == 0 and again["ten-hours"] == again["five-hours"] == 1
    off = dataclasses.replace(HPCSCHED, never_ran_first=False)
    assert {d.key: d.target_gpus for d in allocate(Cluster(1, 2), crowded_cluster(False), off).decisions}["new"] == 0


def test_with_room_for_every_minimum_a_job_that_never_ran_still_needs_its_room_to_pay() -> None:
    """Not crowded (one running job, one newcomer, two GPUs): never having run is no reason to
    shrink a job about to end, so the admission check decides as for any newcomer."""
    hour = goodput_at(SCALES, 2, 1) * 3600.0
    jobs = running_and_newcomer(hour)
    jobs[1] = dataclasses.replace(jobs[1], never_ran=True)
    decisions = {d.key: d for d in allocate(Cluster(1, 2), jobs).decisions}
    assert (decisions["ending"].target_gpus, decisions["new"].target_gpus) == (2, 0)


def test_a_job_that_holds_gpus_cannot_claim_it_never_ran() -> None:
    with pytest.raises(ValueError, match="has run"):
        ElasticJob(key="x", model=SCALES, min_gpus=1, max_gpus=2, current_gpus=1, never_ran=True)
