"""Site mode with several users' elastic jobs at once, in the local cluster's 8-node partition
``wide`` (issue: site mode, item 6): a plain job of a user without hpcsched makes two elastic jobs
of another user shrink, and those still finish in the accuracy band."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from conftest import UserSession, copy_example, end_session, make_session
from test_elastic import final_accuracy, running_attempt, wait_for
from test_site import OTHER, coordinator, plain_sbatch, slurm_job  # noqa: F401  (coordinator: a fixture)

# Six minutes on two cores: CI runs the short variant (test_site.py's G4 test, one job shrinking
# for another user's plain job); `make long` runs this one and records it.
pytestmark = pytest.mark.long

WIDE = ["--partition", "wide"]
TRAIN = ["--checkpoint-every", "20", "--step-delay", "0.05"]


def elastic_user(user: str, socket: str) -> UserSession:
    s = make_session(user)
    s.env["HPCSCHED_COORDINATOR_SOCKET"] = socket
    return s


@pytest.fixture
def alice(coordinator: str) -> Iterator[UserSession]:  # noqa: F811
    s = elastic_user("hpcuser", coordinator)
    yield s
    end_session(s)


def slurm_ids(session: UserSession, job: int) -> list[int]:
    return [int(a["slurm_job_id"]) for a in session.status(job)["attempts"] if a.get("slurm_job_id")]


def nodes_held(session: UserSession, jobs: list[int]) -> int:
    """Nodes the jobs hold in Slurm right now (every live allocation of each job)."""
    return sum(slurm_job(sid)[1] for job in jobs for sid in set(slurm_ids(session, job))
               if slurm_job(sid)[0] == "RUNNING")


def known_to_coordinator(session: UserSession, jobs: list[int]) -> bool:
    decided = {d.get("slurm_job_id") for d in json.loads(session.hs("site", "status", "--json").stdout)["decisions"]}
    return all(slurm_ids(session, job)[-1] in decided for job in jobs)


def test_alices_two_elastic_jobs_shrink_for_bobs_plain_job_and_still_reach_the_accuracy_band(
        alice: UserSession) -> None:
    copy_example(alice, "digits_cnn.py")
    big = alice.run_job("digits_cnn.py", *WIDE, "--nodes", "1-5", "--start-nodes", "5", "--", "--epochs", "150", *TRAIN)
    small = alice.run_job("digits_cnn.py", *WIDE, "--nodes", "1-3", "--start-nodes", "3", "--", "--epochs", "150", *TRAIN)
    running_attempt(alice, big, 1, nodes=5, min_steps=5)
    running_attempt(alice, small, 1, nodes=3, min_steps=5)
    wait_for(lambda: known_to_coordinator(alice, [big, small]), 60, "the coordinator to know both jobs")

    plain = plain_sbatch(OTHER, nodes=2, seconds=30, partition="wide")
    try:
        wait_for(lambda: slurm_job(plain)[0] in ("RUNNING", "COMPLETING", ""), 180, "bob's plain job to start")
        assert slurm_job(plain)[0] != "", "bob's job ran (it did not vanish from the queue unstarted)"
        assert nodes_held(alice, [big, small]) <= 6, "alice's jobs gave up the two nodes bob waited for"
    finally:
        subprocess.run(["scancel", str(plain)], capture_output=True)

    for job in (big, small):
        info = alice.wait(job, timeout=900)
        assert info["state"] == "COMPLETED", info
        assert final_accuracy(alice, job) >= 0.9, "the band of the unresized run (test_elastic C5)"
    resized = [job for job in (big, small) if len(alice.status(job)["attempts"]) > 1]
    assert resized, "at least one of alice's jobs was resized to make room"
