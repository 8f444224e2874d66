"""The elastic policies see what a daemon could know about remaining work, never the truth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from hpcsched.allocator import HPCSCHED, UNDECLARED_PRIOR_S, Cluster, ElasticJob, GoodputModel
from hpcsched.allocator.candidates import goodput_at
from hpcsched.models import NO_NOISE_DATA, BatchLimits, ThroughputParams
from hpcsched.simulator import Application, JobSpec, RestartModel, simulate
from hpcsched.simulator.knowledge import prior_params
from hpcsched.simulator.policies import ElasticPolicy, elastic


def toy(declared: float | None, work: float = 6000.0) -> Application:
    """``work`` samples in three epochs at 100 samples/s on one GPU; its script declares
    ``declared`` (a job that stops at its target before its declared epochs: more than the work)."""
    return Application(
        name="toy",
        params=ThroughputParams(alpha_c=0.1, beta_c=0.0, alpha_n=0.1, beta_n=0.0, alpha_r=0.1, beta_r=0.0, gamma=1.0),
        limits=BatchLimits(min_global_bsz=10, max_global_bsz=40, max_local_bsz=10),
        epoch_ends=np.linspace(work / 3, work, 3),
        grad_batch_sizes=np.array([10.0, 40.0]),
        grad_sqr=np.ones((2, 3)),
        grad_var=np.zeros((2, 3)),
        declared_work=declared,
    )


@pytest.fixture()
def told(monkeypatch: pytest.MonkeyPatch) -> list[ElasticJob]:
    """Every ElasticJob the elastic policies hand the allocator."""
    seen: list[ElasticJob] = []
    real = elastic.allocate

    def spy(cluster: Cluster, jobs: Sequence[ElasticJob], *args: Any, **kwargs: Any) -> Any:
        seen.extend(jobs)
        return real(cluster, jobs, *args, **kwargs)

    monkeypatch.setattr(elastic, "allocate", spy)
    return seen


def test_the_policy_is_told_the_declared_total_less_progress(told: list[ElasticJob]) -> None:
    result = simulate(
        [JobSpec("a", 0.0, "toy", 1, 10)],
        "hpcsched",
        Cluster(1, 1),
        RestartModel.parse("0"),
        applications={"toy": toy(declared=12000.0, work=9000.0)},
    )
    assert result.jobs[0].jct == pytest.approx(90.0)  # the truth: 9,000 samples at 100/s, stops at its target
    # At 0 s the job has reported nothing, so nothing declared either: the undeclared prior of
    # the prior model; at 60 s its declared total less its progress.
    before = GoodputModel(prior_params(10), NO_NOISE_DATA, told[0].model.limits)
    assert [j.remaining_work for j in told] == pytest.approx([UNDECLARED_PRIOR_S * goodput_at(before, 1, 1), 6000.0])


def test_without_a_declaration_the_policy_assumes_least_attained_service(told: list[ElasticJob]) -> None:
    apps = {"toy": toy(declared=None, work=12000.0)}
    simulate([JobSpec("a", 0.0, "toy", 1, 10)], "hpcsched", Cluster(1, 1), RestartModel.parse("0"), applications=apps)
    model = told[1].model  # at 60 s, fitted to the one configuration the job ran at
    assert model.params != told[0].model.params
    assert told[1].remaining_work == pytest.approx(max(6000.0, UNDECLARED_PRIOR_S * goodput_at(model, 1, 1)))
    assert told[1].remaining_work != pytest.approx(6000.0)


def test_declared_totals_can_be_ignored(told: list[ElasticJob]) -> None:
    policy = ElasticPolicy("undeclared", HPCSCHED, declared=False)
    simulate(
        [JobSpec("a", 0.0, "toy", 1, 10)],
        policy,
        Cluster(1, 1),
        RestartModel.parse("0"),
        applications={"toy": toy(declared=6000.0)},
    )
    assert told[0].remaining_work != pytest.approx(6000.0)


def test_trace_jobs_declare_nothing(told: list[ElasticJob]) -> None:
    spec = JobSpec("p", 0.0, "toy", num_replicas=1, batch_size=0, duration_s=30.0)
    result = simulate([spec], "hpcsched", Cluster(1, 1), RestartModel.parse("0"), applications={"toy": toy(6000.0)})
    assert result.jobs[0].jct == pytest.approx(30.0)
    assert told[0].remaining_work > 3000.0  # the prior, not the 3,000 samples the trace gives it
