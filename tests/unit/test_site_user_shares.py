"""The coordinator's pass shares a partition per user, not per job: alice with four elastic jobs
and carol with one end with about half of the nodes each (the real-cluster check is
tests/integration/test_site_fairness.py)."""

from __future__ import annotations

import dataclasses

from site_helpers import partition, record, reported

from hpcsched.jobs.model import JobState
from hpcsched.site.decide import Reported, SitePlan, decide
from hpcsched.slurm.parse import SlurmJobRecord

R, P = JobState.RUNNING, JobState.PENDING
ALICE, CAROL = 1001, 1003


def scene(alice_sizes: list[int], carol: int, carol_running: bool, carol_uid: int = CAROL) -> SitePlan:
    """Alice's jobs 1.. at ``alice_sizes`` on n1.., carol's job 9 (2 nodes asked) after them or waiting."""
    queue: list[SlurmJobRecord] = []
    busy: dict[str, str] = {}
    first = 1
    for i, size in enumerate(alice_sizes, start=1):
        queue.append(record(i, ALICE, R, size, f"n[{first}-{first + size - 1}]"))
        busy.update({f"n{n}": "alloc" for n in range(first, first + size)})
        first += size
    if carol_running:
        queue.append(record(9, carol_uid, R, carol, f"n[{first}-{first + carol - 1}]"))
        busy.update({f"n{n}": "alloc" for n in range(first, first + carol)})
    else:
        queue.append(record(9, carol_uid, P, carol, reason="Resources"))
    reports: dict[int, Reported] = {r.job_id: reported(r.job_id, r.uid, 1, 4) for r in queue}
    return decide({"p": partition(busy, 8)}, queue, reports)


def nodes_by_user(plan: SitePlan) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in plan.decisions:
        out[d.user] = out.get(d.user, 0) + d.target
    return out


def test_alices_four_jobs_shrink_so_that_carols_one_job_starts_with_half_the_partition() -> None:
    plan = scene([2, 2, 2, 2], 2, carol_running=False)
    assert nodes_by_user(plan) == {"u1001": 4, "u1003": 4}
    assert all(d.action == "shrink" for d in plan.decisions if d.user == "u1001")


def test_carol_grows_into_the_nodes_alices_jobs_gave_up_rather_than_alice_taking_them_back() -> None:
    plan = scene([1, 1, 1, 1], 2, carol_running=True)
    actions = {d.slurm_job_id: (d.action, d.target) for d in plan.decisions}
    assert actions[9] == ("grow", 4)
    assert all(actions[job] == ("keep", 1) for job in (1, 2, 3, 4))


def test_the_same_five_jobs_of_one_user_share_per_job_instead() -> None:
    """The contrast that makes the rule visible: were the fifth job alice's too, it would get
    about a fifth of the partition, not half of it."""
    plan = scene([1, 1, 1, 1], 2, carol_running=True, carol_uid=ALICE)
    fifth = next(d for d in plan.decisions if d.slurm_job_id == 9)
    assert fifth.target <= 2, dataclasses.asdict(fifth)
