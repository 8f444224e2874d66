"""The information layer: policies see what a real scheduler knows of each job, never the truth
(unless they ask for the oracle, by name)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from hpcsched.allocator import HPCSCHED, Cluster
from hpcsched.models import (
    DEFAULT_PRIOR,
    NO_NOISE_DATA,
    POLLUX_PRIOR,
    BatchLimits,
    Observation,
    ThroughputParams,
    ThroughputPrior,
    fit,
    predict_step_time,
)
from hpcsched.simulator import Application, JobSpec, RestartModel, simulate
from hpcsched.simulator.jobs import JobView
from hpcsched.simulator.knowledge import Information, prior_params
from hpcsched.simulator.policies import POLICY_NAMES, ElasticPolicy, make_policy

TRUE = ThroughputParams(alpha_c=0.05, beta_c=0.005, alpha_n=0.3, beta_n=0.0, alpha_r=0.02, beta_r=0.0, gamma=1.0)


def app(work: float = 24000.0, epochs: int = 20) -> Application:
    """``work`` samples in ``epochs`` equal epochs; 0.1 s per step of 10 on one GPU; noisy
    gradients; its script declares exactly the work it does."""
    return Application(
        name="toy",
        params=TRUE,
        limits=BatchLimits(min_global_bsz=10, max_global_bsz=80, max_local_bsz=10),
        epoch_ends=np.linspace(work / epochs, work, epochs),
        grad_batch_sizes=np.array([10.0, 80.0]),
        grad_sqr=np.ones((2, epochs)),
        grad_var=np.full((2, epochs), 1e4),
        declared_work=work,
    )


class Recording(ElasticPolicy):
    """hpcsched's policy, keeping every view it was handed at a round."""

    def __init__(self, oracle: bool = False, explore: bool = False, prior: ThroughputPrior = DEFAULT_PRIOR) -> None:
        super().__init__("recording", HPCSCHED, explore=explore, oracle=oracle, prior=prior)
        self.seen: list[tuple[float, JobView]] = []

    def decide(self, now: float, jobs: Sequence[JobView], cluster: Cluster, restart: RestartModel) -> Mapping[str, int]:
        self.seen += [(now, job) for job in jobs]
        return super().decide(now, jobs, cluster, restart)


def run(policy: Recording, gpus: int = 1, information: Information | None = None, work: float = 24000.0) -> float:
    result = simulate(
        [JobSpec("a", 0.0, "toy", 1, 10)],
        policy,
        Cluster(1, gpus),
        RestartModel.parse("0"),
        applications={"toy": app(work)},
        information=information or Information(),
    )
    return result.jobs[0].jct


def test_a_job_that_never_ran_is_seen_through_the_daemons_prior() -> None:
    policy = Recording()
    run(policy)
    first = policy.seen[0][1]
    assert (first.measured, first.largest, first.declared_work) == (False, 0, None)
    assert first.params == prior_params(10) != TRUE
    assert first.noise == NO_NOISE_DATA


def test_the_step_time_model_is_the_daemons_fit_of_the_configurations_run() -> None:
    """On one GPU the job runs at one configuration: the model is fit() of that step time alone,
    not the true model (which the prior's network terms do not match)."""
    policy = Recording()
    run(policy)
    later = policy.seen[1][1]
    assert later.measured and later.largest == 1
    assert later.params == fit([Observation(1, 1, 10, 0, step_time=0.1)])
    assert later.params != TRUE


def test_pollux_policies_fit_with_pollux_assumptions_and_expect_more_from_a_second_gpu() -> None:
    """The same fit and the same single-GPU step time; Pollux's prior assumes no all-reduce cost
    until it is measured (its ``fit_perf_params``), the daemon's a tenth of a step: on two GPUs of a
    node Pollux's model predicts about the one-GPU step, the daemon's a slower one."""
    cautious, optimistic = Recording(), Recording(prior=POLLUX_PRIOR)
    run(cautious)
    run(optimistic)
    seen = {name: policy.seen[1][1].params for name, policy in (("daemon", cautious), ("pollux", optimistic))}
    assert seen["pollux"] == fit([Observation(1, 1, 10, 0, step_time=0.1)], POLLUX_PRIOR)
    two = {name: float(predict_step_time(params, 1, 2, 10, 0)) for name, params in seen.items()}
    assert two["pollux"] == pytest.approx(0.1, rel=0.05)
    assert two["daemon"] == pytest.approx(1.1 * two["pollux"], rel=0.02)  # all-reduce at 0.1 of the step
    assert make_policy("pollux").prior == make_policy("pollux-faithful").prior == POLLUX_PRIOR
    assert make_policy("hpcsched").prior == DEFAULT_PRIOR


def test_remaining_work_is_the_declaration_less_progress_even_when_it_is_wrong() -> None:
    policy = Recording()
    run(policy, information=Information(declared_scale=1.5))
    at_60 = policy.seen[1][1]
    assert at_60.declared_work == pytest.approx(36000.0)  # declared 50% more than it does
    assert 0.0 < at_60.work_done < 24000.0


def test_a_job_that_stops_early_still_declares_all_its_epochs() -> None:
    """Early stopping: the job does only some of its 20 epochs (17 for this seed), the view still
    says all 20."""
    policy = Recording()
    stopped = run(policy, information=Information(early_stop=0.75))
    full = run(Recording())
    assert stopped < full
    assert all(view.declared_work in (None, pytest.approx(24000.0)) for _, view in policy.seen)


def test_only_an_oracle_policy_is_handed_the_truth() -> None:
    policy = Recording(oracle=True)
    run(policy, information=Information(early_stop=0.75, declared_scale=1.5))
    view = policy.seen[0][1]
    assert view.oracle and view.params == TRUE
    assert view.declared_work is not None and view.declared_work < 24000.0  # what it really does


def test_the_growth_cap_doubles_at_most_the_largest_size_run() -> None:
    """8 idle GPUs: capped, the job goes 1, 2, 4, 8 GPUs round by round; uncapped it could take
    all 8 at once."""
    capped = Recording(explore=True)
    run(capped, gpus=8, work=240000.0)
    sizes = [view.gpus for _, view in capped.seen]
    assert sizes[:4] == [0, 1, 2, 4]
    assert all(b <= max(1, 2 * a) for a, b in itertools.pairwise(sizes))


@pytest.mark.parametrize(("scale", "stop", "message"), [(0.0, 0.0, "declared_scale"), (1.0, 1.0, "early_stop")])
def test_impossible_information_is_refused_naming_the_setting(scale: float, stop: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Information(declared_scale=scale, early_stop=stop)


def test_oracle_policies_are_labelled_upper_bounds_left_out_of_the_default_comparison() -> None:
    for name in ("hpcsched", "pollux"):
        honest, bound = make_policy(name), make_policy(f"{name}-oracle")
        assert isinstance(honest, ElasticPolicy) and isinstance(bound, ElasticPolicy)
        assert (honest.oracle, honest.explore) == (False, True)  # the growth cap is on
        assert (bound.oracle, bound.name) == (True, f"{name}-oracle")
    assert not [name for name in POLICY_NAMES if name.endswith("-oracle")]
