"""The allocator's inputs built from hpcsched's jobs and Slurm's node states."""

from __future__ import annotations

import dataclasses
import math

import pytest

from hpcsched.allocator import undeclared_prior
from hpcsched.daemon.rebalance_plan import (
    FLAT_NOISE,
    cluster_view,
    elastic_job,
    growth_cap,
    observations,
    queue_wait_estimate,
    waiting,
    waiting_job,
)
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.models import BatchLimits, GradientNoise, speedup
from hpcsched.slurm.hostlist import expand as expand_hostlist


def job(nodes: str = "1-3", attempts: tuple[tuple[int, int], ...] = ((1, 2),), total: int | None = 1000) -> Job:
    atts = tuple(
        Attempt(
            job_id=1,
            number=n,
            reason=AttemptReason.SUBMIT if n == 1 else AttemptReason.RESIZE,
            state=JobState.RUNNING,
            nodes=k,
            slurm_job_id=10 + n,
            node_list="node[1-2]",
            start_time=100.0 * n,
        )
        for n, k in attempts
    )
    return Job(
        id=1,
        name="digits",
        user="u",
        uid=1000,
        state=JobState.RUNNING,
        request={"nodes": nodes},
        created=50.0,
        job_dir="/jobs/1",
        attempts=atts,
        progress={"elastic": True, "global_batch": 64, "step": 200, "total_steps": total},
    )


def steps(attempt: int, step_time: float, count: int = 5) -> list[dict[str, object]]:
    return [
        {"time": float(i), "attempt": attempt, "event": "step", "step": i, "step_time": step_time, "global_batch": 64}
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("nodes", "attempts", "most"),
    [
        ("1-8", ((1, 1),), 2),  # ran on one node: offered two at most
        ("1-8", ((1, 1), (2, 2)), 4),
        ("1-3", ((1, 2),), 3),  # never beyond the user's range
        ("1-8", ((1, 3), (2, 1)), 6),  # shrunk from 3 to 1: may grow back past 3, to twice it
        ("2-8", (), 2),  # never ran: its minimum
    ],
)
def test_a_pass_offers_at_most_twice_the_nodes_a_job_has_run_on(nodes: str, attempts: tuple[tuple[int, int], ...],
                                                                 most: int) -> None:
    j = job(nodes, attempts)
    allowed = [int(x) for x in nodes.split("-")]
    current = attempts[-1][1] if attempts else 0
    assert growth_cap(j, allowed[0], allowed[-1], current) == most
    if attempts:
        view = elastic_job(j, steps(len(attempts), 0.1), now=1000.0, queue_wait_s=60.0)
        assert view is not None and view.max_gpus == most
        # climbing: it runs on the most nodes it has run on (not after a shrink from more)
        assert view.climbing == (current == max(n for _, n in attempts))
        # grows are make-before-break: the queue wait costs only the speedup it delays
        full = view.restart.checkpoint_s + view.restart.start_s + 60.0
        assert most == current or view.restart.seconds(current, most) < full


def test_hostlists_expand_like_slurm() -> None:
    assert expand_hostlist("node[1-3,5],gpu07") == ["node1", "node2", "node3", "node5", "gpu07"]
    assert expand_hostlist("n[08-10]") == ["n08", "n09", "n10"]
    assert expand_hostlist("") == []


def test_one_observation_per_attempt_with_its_mean_step_time() -> None:
    obs = observations(job(attempts=((1, 2), (2, 3))), steps(1, 0.2) + steps(2, 0.15))
    assert [(o.num_nodes, o.num_replicas, o.local_bsz, round(o.step_time, 3)) for o in obs] == [(2, 2, 32, 0.2), (3, 3, 21, 0.15)]


def test_elastic_view_carries_range_size_and_remaining_samples() -> None:
    view = elastic_job(job(), steps(1, 0.2), now=400.0, queue_wait_s=0.0)
    assert view is not None
    assert (view.min_gpus, view.max_gpus, view.current_gpus) == (1, 3, 2)
    assert view.remaining_work == pytest.approx((1000 - 200) * 64)
    assert view.time_at_size_s == 300.0


def test_undeclared_total_is_estimated_from_work_done_and_no_steps_means_no_view() -> None:
    """Least attained service: as much again as done, at least half an hour on the minimum size."""
    view = elastic_job(job(total=None), steps(1, 0.2), now=400.0, queue_wait_s=0.0)
    assert view is not None
    half_hour = undeclared_prior(view.model, view.min_gpus, 1)
    assert math.isfinite(view.remaining_work) and view.remaining_work == pytest.approx(max(half_hour, 200 * 64))
    assert elastic_job(job(), [], now=400.0, queue_wait_s=0.0) is None


def test_a_job_past_the_steps_it_declared_is_not_taken_for_finished() -> None:
    """Step 200 of a declared 150: the declaration was wrong, so what is left is estimated from
    the 50 steps run past it (least attained service), at least half an hour on the minimum."""
    view = elastic_job(job(total=150), steps(1, 0.2), now=400.0, queue_wait_s=0.0)
    assert view is not None
    half_hour = undeclared_prior(view.model, view.min_gpus, 1)
    assert view.remaining_work == pytest.approx(max(half_hour, 50 * 64))
    assert view.remaining_work > 0


def test_cluster_view_marks_down_nodes_unavailable_and_other_jobs_nodes_occupied() -> None:
    cluster, names = cluster_view(
        {"node1": "alloc", "node2": "alloc", "node3": "idle", "node4": "down*", "node5": "mix"}, ours=["node1", "node2"]
    )
    assert names == ["node1", "node2", "node3", "node4", "node5"]
    assert cluster.unavailable_nodes == frozenset({3})
    assert dict(cluster.foreign_gpus) == {4: 1}
    assert cluster.capacity == 3  # node1, node2 (ours) and node3 (idle)


def test_queue_wait_is_zero_only_with_idle_nodes_and_nobody_waiting() -> None:
    assert queue_wait_estimate(idle_nodes=2, pending_jobs=0) == 0.0
    assert queue_wait_estimate(idle_nodes=0, pending_jobs=3) > queue_wait_estimate(idle_nodes=0, pending_jobs=0) > 0


def adaptive_steps(attempt: int, nodes: int, step_time: float, noise: tuple[float, float] | None) -> list[dict[str, object]]:
    """New-format lines of an adaptive job: 4 ranks per node, 32 samples each, M0 = 64."""
    sqr, var = noise or (None, None)
    return [
        {
            "time": float(i),
            "attempt": attempt,
            "event": "step",
            "step": 10 * i,
            "step_time": step_time,
            "timed_steps": 10,
            "nodes": nodes,
            "world_size": 4 * nodes,
            "local_batch": 32,
            "accum_steps": 0,
            "global_batch": 128 * nodes,
            "grad_sqr": sqr,
            "grad_var": var,
            "adaptive": True,
            "base_batch": 64,
            "max_batch": 1024,
            "max_local_batch": 48,
            "max_accum_steps": 2,
        }
        for i in range(1, 4)
    ]


def test_new_format_lines_make_each_node_one_replica_of_its_ranks_batch() -> None:
    obs = observations(job(attempts=((1, 1), (2, 2))), adaptive_steps(1, 1, 0.2, None) + adaptive_steps(2, 2, 0.3, None))
    assert [(o.num_nodes, o.num_replicas, o.local_bsz, o.step_time) for o in obs] == [(1, 1, 128, 0.2), (2, 2, 128, 0.3)]


def test_a_job_that_reports_its_noise_is_sized_with_that_noise_and_its_own_batch_limits() -> None:
    view = elastic_job(job(), adaptive_steps(1, 2, 0.2, (0.5, 400.0)), now=400.0, queue_wait_s=0.0)
    assert view is not None
    assert view.model.noise == GradientNoise(grad_sqr=0.5, grad_var=400.0)
    assert view.model.limits == BatchLimits(min_global_bsz=64, max_global_bsz=1024, max_local_bsz=48 * 4, max_accum_steps=2)
    # 800 steps left at 256 samples, each sample worth its efficiency in samples at M0 = 64
    assert view.remaining_work == pytest.approx(800 * 256 * (400 + 0.5 * 64) / (400 + 0.5 * 256))


def test_without_noise_the_batch_per_node_stays_the_current_one_under_flat_noise() -> None:
    view = elastic_job(job(), adaptive_steps(1, 2, 0.2, None), now=400.0, queue_wait_s=0.0)
    assert view is not None
    assert view.model.noise == FLAT_NOISE
    limits = view.model.limits  # 128 samples per node now; 1 to 3 nodes
    assert (limits.min_global_bsz, limits.max_global_bsz, limits.max_local_bsz, limits.max_accum_steps) == (128, 384, 128, 0)
    assert view.remaining_work == pytest.approx((1000 - 200) * 256)


def test_a_fixed_batch_job_can_be_sized_to_a_node_count_its_global_batch_does_not_divide() -> None:
    """The runtime keeps the batch per process, so on 3 nodes a job at 2 x 32 runs 3 x 32."""
    view = elastic_job(job(), steps(1, 0.2), now=400.0, queue_wait_s=0.0)
    assert view is not None
    gains = speedup(view.model.params, view.model.noise, [1, 2, 3], [1, 2, 3], view.model.limits)
    assert gains[2] > gains[1] > 0.0


def queued(reason: str = "Resources", attempt_reason: AttemptReason = AttemptReason.SUBMIT, nodes: str = "1-2") -> Job:
    pending = Attempt(job_id=2, number=1, reason=attempt_reason, state=JobState.PENDING, nodes=1, slurm_job_id=30,
                      state_reason=reason, submit_time=900.0)  # fmt: skip
    return Job(id=2, name="newcomer", user="u", uid=1000, state=JobState.PENDING, request={"nodes": nodes},
               created=880.0, job_dir="/jobs/2", attempts=(pending,))  # fmt: skip


@pytest.mark.parametrize(
    ("reason", "attempt_reason", "waits"),
    [
        ("Resources", AttemptReason.SUBMIT, True),
        ("Priority", AttemptReason.REQUEUE, True),
        ("Dependency", AttemptReason.SUBMIT, False),  # free nodes would not start it
        ("QOSMaxNodePerUserLimit", AttemptReason.SUBMIT, False),
        ("Resources", AttemptReason.RESIZE, False),  # a running job's shrink or grow, not a newcomer
    ],
)
def test_only_jobs_that_free_nodes_would_start_count_as_waiting(reason: str, attempt_reason: AttemptReason, waits: bool) -> None:
    assert waiting(queued(reason, attempt_reason)) is waits


def test_a_job_that_never_ran_is_admitted_at_its_minimum_with_the_undeclared_prior() -> None:
    view = waiting_job(queued(nodes="1-2"), [], now=1000.0, queue_wait_s=0.0)
    # the growth cap: a job that has run on no nodes is offered its minimum only
    assert (view.current_gpus, view.min_gpus, view.max_gpus) == (0, 1, 1)
    assert view.time_in_state_s == pytest.approx(100.0)  # waiting since its submission
    assert view.never_ran  # least attained service: it may preempt where jobs outnumber nodes
    # half an hour of work on its minimum size, whatever step time the prior assumes
    assert view.remaining_work == pytest.approx(undeclared_prior(view.model, 1, 1))
    # the prior's all-reduce costs something: a second node is worth less than twice the first
    assert 1.0 < float(speedup(view.model.params, view.model.noise, 2, 2, view.model.limits)) < 2.0


def test_a_requeued_job_that_ran_before_is_not_taken_for_one_that_never_ran() -> None:
    ran = Attempt(job_id=2, number=1, reason=AttemptReason.SUBMIT, state=JobState.PREEMPTED, nodes=2, slurm_job_id=29,
                  submit_time=880.0, start_time=890.0)  # fmt: skip
    waits = dataclasses.replace(queued(attempt_reason=AttemptReason.REQUEUE).attempts[0], number=2)
    view = waiting_job(dataclasses.replace(queued(), attempts=(ran, waits)), [], now=1000.0, queue_wait_s=0.0)
    assert view.current_gpus == 0 and not view.never_ran
