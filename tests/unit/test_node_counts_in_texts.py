"""Issue 14 item 8, "1 nodes": every text a user reads that counts nodes, CPUs or GPUs says
"1 node" for one and "2 nodes" for two (store events, resize events, the grow shown in status)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcsched.daemon.store import Store
from hpcsched.errors import ValidationError
from hpcsched.jobs.model import AttemptReason, JobState
from hpcsched.planning.fields import format_count
from hpcsched.planning.request import JobRequest

REQUEST = {"script": "/w/train.py", "workdir": "/w", "nodes": "1-3"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "store.sqlite"))
    yield s
    s.close()


def test_format_count_says_one_node_and_two_nodes() -> None:
    assert [format_count(n, "node") for n in (0, 1, 2)] == ["0 nodes", "1 node", "2 nodes"]


def test_attempt_event_of_a_one_node_attempt_says_1_node(store: Store) -> None:
    job_id = store.create_job(name="t", uid=1000, user="alice", request=REQUEST, nodes=2, jobs_root="/jobs", now=1.0)
    store.add_attempt(job_id, 2, 2.0, reason=AttemptReason.RESIZE, state=JobState.PENDING, nodes=1,
                      slurm_job_id=None, log_path="/jobs/x/attempt-2.log")
    details = [detail for _t, kind, detail in store.events(job_id) if kind == "attempt"]
    assert details[-1] == "attempt 2: resize, 1 node"


def test_a_grow_waiting_in_the_queue_names_its_node_count_in_the_singular_and_plural(store: Store) -> None:
    job_id = store.create_job(name="t", uid=1000, user="alice", request=REQUEST, nodes=1, jobs_root="/jobs", now=1.0)
    store.update_attempt(job_id, 1, 2.0, state=JobState.RUNNING, slurm_job_id=10)
    store.add_attempt(job_id, 2, 3.0, reason=AttemptReason.RESIZE, state=JobState.PENDING, nodes=2,
                      slurm_job_id=11, log_path="/jobs/x/attempt-2.log")
    job = store.get_job(job_id)
    assert job is not None
    assert job.as_dict(4.0)["reason"] == "growing to 2 nodes (Slurm job 11 pending)"


def test_more_processes_than_one_gpu_is_refused_saying_1_gpu(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("")
    with pytest.raises(ValidationError) as refused:
        JobRequest.from_options({"script": str(tmp_path / "train.py"), "workdir": str(tmp_path), "gpus_per_node": 1,
                                 "procs_per_node": 2})
    assert str(refused.value) == "--procs-per-node: 2 processes for 1 GPU per node; at most one per GPU"
