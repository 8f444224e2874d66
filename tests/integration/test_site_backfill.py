"""Site mode's third good-citizen rule on the real cluster, in the 8-node partition ``wide``: while
another user's plain job is blocked (shrinking every elastic job would not start it), an elastic
job takes only the idle nodes that the blocked job's planned start leaves spare, and the blocked
job starts as soon as the job it waits for ends."""

from __future__ import annotations

import json
import subprocess
import time

from conftest import UserSession, copy_example
from test_elastic import wait_for
from test_site import OTHER, coordinator, plain_sbatch, slurm_job  # noqa: F401  (coordinator: a fixture)
from test_site_users import TRAIN, WIDE, alice, nodes_held  # noqa: F401  (alice: a fixture)

THIRD = "hpcuser3"  # another user without hpcsched


def wide_room(session: UserSession) -> dict[str, object]:
    view = json.loads(session.hs("site", "status", "--json").stdout)
    return next((p for p in view.get("partitions", []) if p.get("partition") == "wide"), {})


def test_while_a_plain_job_is_blocked_an_elastic_job_takes_only_the_nodes_its_start_leaves_spare(
        alice: UserSession) -> None:  # noqa: F811
    # bob holds 4 of the 8 nodes for up to 10 minutes; carol needs 6, so she waits for bob's job.
    # When it ends she has bob's 4 and the 3 idle nodes (alice's one comes back only at its time
    # limit), 1 to spare: alice's elastic job may hold 2 nodes in all, and the other 2 idle nodes are
    # kept for carol (Slurm's backfill shows them PLANNED). Before, every idle node was kept.
    bob = plain_sbatch(OTHER, nodes=4, seconds=600, partition="wide", limit="10")
    carol = 0
    try:
        wait_for(lambda: slurm_job(bob)[0] == "RUNNING", 60, "bob's plain job to run")
        carol = plain_sbatch(THIRD, nodes=6, seconds=20, partition="wide")
        copy_example(alice, "digits_cnn.py")
        job = alice.run_job("digits_cnn.py", *WIDE, "--nodes", "1-4", "--start-nodes", "1", "--", "--epochs", "300", *TRAIN)
        wait_for(lambda: nodes_held(alice, [job]) >= 1, 180, "alice's job to run")

        def planned() -> bool:
            room = wide_room(alice)
            return room.get("blocked") == carol and room.get("kept") == 2 and room.get("capacity") == 2

        wait_for(planned, 60, "the coordinator to keep 2 idle nodes for carol and leave alice's job 2 in all")
        seen = []
        for _ in range(6):  # alice's job stays within them while carol waits (whether it grows is its model's call)
            time.sleep(5)
            seen.append(nodes_held(alice, [job]))
        assert slurm_job(carol)[0] == "PENDING"
        assert 1 <= max(seen) <= 2, f"alice's job held {max(seen)} nodes while carol waited for 6 of 8"

        subprocess.run(["scancel", str(bob)], user=OTHER, group=OTHER, capture_output=True, check=True, timeout=60)
        wait_for(lambda: slurm_job(carol)[0] in ("RUNNING", "COMPLETING", ""), 120, "carol's job to start")
        assert alice.status(job)["state"] in ("RUNNING", "PENDING"), "alice's job trains on"
    finally:
        subprocess.run(["scancel", str(bob), *([str(carol)] if carol else [])], capture_output=True)
