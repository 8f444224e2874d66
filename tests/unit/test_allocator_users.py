"""Fairness between users: a user's jobs share that user's part of the cluster (site mode)."""

from __future__ import annotations

import dataclasses

import pytest
from site_helpers import view

from hpcsched.allocator import HPCSCHED, Cluster, allocate
from hpcsched.allocator.allocate import fair_shares
from hpcsched.allocator.candidates import job_table
from hpcsched.allocator.cluster import Limits


def jobs(a_jobs: int, c_jobs: int, users: bool = True) -> list:  # type: ignore[type-arg]
    out = [dataclasses.replace(view(1, 16), key=f"a{i}", user="alice" if users else "") for i in range(a_jobs)]
    return out + [dataclasses.replace(view(1, 16), key=f"c{i}", user="carol" if users else "") for i in range(c_jobs)]


def totals(decisions: tuple) -> dict[str, int]:  # type: ignore[type-arg]
    out: dict[str, int] = {}
    for d in decisions:
        out[d.key[0]] = out.get(d.key[0], 0) + d.target_gpus
    return out


def test_a_user_with_four_jobs_gets_the_share_of_a_user_with_one_not_four_times_it() -> None:
    by_user = totals(allocate(Cluster(16, 1), jobs(4, 1)).decisions)
    by_job = totals(allocate(Cluster(16, 1), jobs(4, 1, users=False)).decisions)
    assert abs(by_user["a"] - by_user["c"]) <= 1, by_user
    assert by_job["a"] >= 3 * by_job["c"], f"without users each job counts the same: {by_job}"


def test_fair_shares_split_the_cluster_by_user_then_by_job() -> None:
    js = jobs(4, 1)
    tables = [job_table(j, Cluster(16, 1), Limits()) for j in js]
    assert fair_shares(js, tables, 16) == [2, 2, 2, 2, 8]
    single = jobs(5, 0)
    assert fair_shares(single, tables, 16) == [3] * 5


def test_a_users_jobs_never_go_below_their_minimum_to_even_the_shares() -> None:
    assert totals(allocate(Cluster(6, 1), jobs(4, 1)).decisions) == {"a": 4, "c": 2}


def weighted(a_weight: float, c_weight: float) -> list:  # type: ignore[type-arg]
    return [dataclasses.replace(j, weight=a_weight if j.user == "alice" else c_weight) for j in jobs(1, 1)]


def test_fair_shares_follow_the_users_weights() -> None:
    """Slurm's shares 3:1 (site mode): alice's part is three times carol's; equal weights as before."""
    js = weighted(3.0, 1.0)
    tables = [job_table(j, Cluster(16, 1), Limits()) for j in js]
    assert fair_shares(js, tables, 16) == [12, 4]
    assert fair_shares(weighted(0.25, 0.25), tables, 16) == [8, 8]  # only the ratio counts


def test_a_user_with_three_times_the_shares_ends_with_about_three_times_the_gpus() -> None:
    by_user = totals(allocate(Cluster(16, 1), weighted(3.0, 1.0)).decisions)
    even = totals(allocate(Cluster(16, 1), weighted(1.0, 1.0)).decisions)
    assert by_user["a"] >= 2 * by_user["c"], by_user
    assert abs(even["a"] - even["c"]) <= 1, even


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_a_stronger_shortest_remaining_first_weight_does_not_multiply_a_users_share(exponent: float) -> None:
    """Two equal jobs, Slurm shares 3:1: 12 and 4 of 16 GPUs whatever ``srpt_weight`` is. Measured
    on the users' fair shares, alice's job looked shorter because of her share and the exponent
    favoured it again: 13:3 at 2, 14:2 at 3."""
    policy = dataclasses.replace(HPCSCHED, srpt_weight=exponent)
    assert totals(allocate(Cluster(16, 1), weighted(3.0, 1.0), policy).decisions) == {"a": 12, "c": 4}
    assert totals(allocate(Cluster(16, 1), weighted(1.0, 1.0), policy).decisions) == {"a": 8, "c": 8}


def test_a_weight_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight"):
            dataclasses.replace(view(1, 16), weight=bad)
