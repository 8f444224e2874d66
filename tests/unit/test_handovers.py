"""Make-before-break hand-over: the old allocation gives its nodes to the grown successor only when
the successor's own partition has room (idle nodes of another partition do not count) and no job
that Slurm ranks first waits for nodes there (it would take them, and the job would wait with no
allocation at all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcsched.daemon import resize
from hpcsched.daemon.resize import Handovers
from hpcsched.daemon.store import Store
from hpcsched.jobs import layout
from hpcsched.jobs.model import AttemptReason, JobState
from hpcsched.slurm.parse import SlurmJobRecord

OLD_ID, NEW_ID = 501, 502


class Client:
    """Idle nodes per partition as ``sinfo -p`` would count them; signals sent."""

    def __init__(self, idle: dict[str, int], others: list[SlurmJobRecord] | None = None) -> None:
        self.idle = idle
        self.others = others or []
        self.asked: list[str] = []
        self.signalled: list[int] = []

    def idle_nodes(self, partitions: str = "") -> int:
        self.asked.append(partitions)
        return self.idle.get(partitions, 0)

    def signal_batch(self, slurm_job_id: int, signal: str = "USR1") -> None:
        self.signalled.append(slurm_job_id)

    def queue_all(self) -> list[SlurmJobRecord]:
        self.asked.append("squeue")
        return self.others


def growing_job(tmp_path: Path) -> tuple[Store, int]:
    """A job running on 1 node (attempt 1) whose 3-node successor (attempt 2) waits in the queue."""
    store = Store(str(tmp_path / "state.db"))
    job_id = store.create_job(name="grow", uid=1000, user="alice", request={}, nodes=1,
                              jobs_root=str(tmp_path / "jobs"), now=0.0)
    store.update_attempt(job_id, 1, 1.0, state=JobState.RUNNING, slurm_job_id=OLD_ID)
    store.add_attempt(job_id, 2, 2.0, reason=AttemptReason.RESIZE, state=JobState.PENDING, nodes=3,
                      slurm_job_id=NEW_ID, log_path=str(tmp_path / "a2.log"))
    job = store.get_job(job_id)
    assert job is not None
    Path(job.job_dir).mkdir(parents=True)
    return store, job_id


def pending(partition: str, job_id: int = NEW_ID, priority: int = 100, reason: str = "Resources") -> SlurmJobRecord:
    return SlurmJobRecord(job_id=job_id, name="grow", comment="", slurm_state="PENDING", state=JobState.PENDING,
                          reason=reason, node_count=3, node_list="", submit_time=None, start_time=None,
                          end_time=None, exit_code=None, restart_count=0, partition=partition, priority=priority)


@pytest.mark.parametrize(("idle", "hands_over"), [
    ({"wide": 2, "debug": 0}, True),   # 2 idle + its own 1 node = 3 in its partition
    ({"wide": 1, "debug": 5}, False),  # idle nodes elsewhere cannot hold the successor
])
def test_hand_over_counts_idle_nodes_of_the_successors_partition_only(
        tmp_path: Path, idle: dict[str, int], hands_over: bool) -> None:
    store, job_id = growing_job(tmp_path)
    client = Client(idle)
    handovers = Handovers(store, client, lambda: 10.0)  # type: ignore[arg-type]
    job = store.get_job(job_id)
    assert job is not None

    handovers.check([job], {NEW_ID: pending("wide")})

    assert client.asked == (["wide", "squeue"] if hands_over else ["wide"]), "all users' queue only when a hand-over is due"
    assert client.signalled == ([OLD_ID] if hands_over else [])
    assert layout.resize_request(job.job_dir).exists() is hands_over


@pytest.mark.parametrize(("other", "hands_over"), [
    (pending("wide", 700, priority=101), False),  # bob's plain job, first in Slurm's order, waits in wide
    (pending("wide", 700, priority=100), False),  # as high: Slurm's order between them is not ours to know
    (pending("debug,wide", 700, priority=101), False),  # one of its partitions
    (pending("wide", 700, priority=99), True),  # behind the successor: Slurm starts the successor first
    (pending("debug", 700, priority=101), True),  # waits elsewhere
    (pending("wide", 700, priority=101, reason="Dependency"), True),  # free nodes would not start it
    (pending("wide", 700, priority=101, reason="None"), False),  # not looked at yet: Slurm's next pass may start it
])
def test_no_hand_over_while_a_job_slurm_serves_first_waits_for_nodes_there(
        tmp_path: Path, other: SlurmJobRecord, hands_over: bool) -> None:
    store, job_id = growing_job(tmp_path)
    client = Client({"wide": 2}, [pending("wide"), other])
    handovers = Handovers(store, client, lambda: 10.0)  # type: ignore[arg-type]
    job = store.get_job(job_id)
    assert job is not None

    for _ in range(2):
        handovers.check([job], {NEW_ID: pending("wide")})

    assert client.signalled == ([OLD_ID] if hands_over else [])
    assert layout.resize_request(job.job_dir).exists() is hands_over
    held = [detail for _, kind, detail in store.events(job_id) if kind == "handover_held"]
    assert held == ([] if hands_over else ["Slurm job 700 waits for nodes in " + other.partition
                                           + " ahead of attempt 2; the job trains on at 1 node(s)"])


def test_a_held_hand_over_is_looked_at_again_only_after_a_while_and_then_goes_ahead(tmp_path: Path) -> None:
    # bob's plain job waits ahead of the successor: held. The all-users squeue is not asked again
    # on every cycle (1 s apart here) while the grow waits, only after HELD_RECHECK_S; by then bob's
    # job has started elsewhere, and the hand-over goes ahead.
    store, job_id = growing_job(tmp_path)
    client = Client({"wide": 2}, [pending("wide"), pending("wide", 700, priority=101)])
    now = [10.0]
    handovers = Handovers(store, client, lambda: now[0])  # type: ignore[arg-type]
    job = store.get_job(job_id)
    assert job is not None

    for _ in range(20):
        handovers.check([job], {NEW_ID: pending("wide")})
        now[0] += 1.0
    assert client.asked.count("squeue") == 1 and client.signalled == []

    client.others = [pending("wide")]  # bob's job is no longer waiting
    now[0] = 10.0 + resize.HELD_RECHECK_S
    handovers.check([job], {NEW_ID: pending("wide")})
    assert client.asked.count("squeue") == 2 and client.signalled == [OLD_ID]
    kinds = [kind for _, kind, _ in store.events(job_id)]
    assert kinds.count("handover_held") == 1 and kinds.count("handover") == 1
