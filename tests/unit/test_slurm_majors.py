"""The Slurm gateway's parsers on real output of every recorded Slurm major.

Each directory tests/fixtures/slurm/<major>/ holds one recording made by
``cluster/compat-cluster record RELEASE`` (cluster/compat-record): the same short jobs — completed,
failed, killed by a signal, pending, running, cancelled, timed out, requeued, shrunk with
``scontrol update NumNodes`` — and what squeue, sacct, sinfo and scontrol printed about them;
jobs.json names each scenario's job id. Every test runs once per recorded major.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcsched.daemon.requeue import reason_from_runs
from hpcsched.doctor.probes import partition_gres
from hpcsched.images.check import partition_nodes
from hpcsched.jobs.model import AttemptReason, JobState
from hpcsched.launcher.driver import allocation_nodes
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import (
    SlurmJobRecord,
    parse_idle_nodes,
    parse_node_partitions,
    parse_node_states,
    parse_partitions,
    parse_sacct,
    parse_sbatch_parsable,
    parse_sinfo_nodes,
    parse_squeue,
    parse_version,
)
from hpcsched.slurm.runner import CommandResult

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
MAJORS = sorted(p for p in ROOT.iterdir() if (p / "jobs.json").is_file())


@dataclass(frozen=True)
class Recording:
    path: Path
    jobs: dict[str, int]
    partition: str

    def text(self, name: str) -> str:
        return (self.path / name).read_text()

    def queue(self, name: str) -> dict[str, SlurmJobRecord]:
        """The recording's jobs in one squeue snapshot, by scenario."""
        by_id = {r.job_id: r for r in parse_squeue(self.text(name))}
        return {scenario: by_id[i] for scenario, i in self.jobs.items() if i in by_id}

    def runs(self) -> dict[str, list[SlurmJobRecord]]:
        """Every run sacct -D printed, by scenario, oldest first."""
        records = parse_sacct(self.text("sacct-all.json"))
        return {s: sorted((r for r in records if r.job_id == i), key=_started) for s, i in self.jobs.items()}


def _started(run: SlurmJobRecord) -> tuple[float, bool]:
    """Runs in the order they happened; a shrink's closed segment and the run after it share a start."""
    return run.start_time or run.submit_time or 0.0, run.state.is_final


@pytest.fixture(params=MAJORS, ids=[p.name for p in MAJORS])
def rec(request: pytest.FixtureRequest) -> Recording:
    path: Path = request.param
    meta = json.loads((path / "jobs.json").read_text())
    return Recording(path, {k: int(v) for k, v in meta["jobs"].items()}, meta["partition"])


def test_recordings_cover_each_major_of_the_matrix() -> None:
    assert {"22.05", "24.11"} <= {p.name for p in MAJORS}


def test_version_is_the_recorded_major(rec: Recording) -> None:
    major, minor, _ = parse_version(rec.text("sinfo-version.txt"))
    assert f"{major}.{minor:02d}" == rec.path.name


def test_sbatch_parsable_gives_the_first_job_id(rec: Recording) -> None:
    assert parse_sbatch_parsable(rec.text("sbatch-parsable.txt")) == rec.jobs["completed"]


def test_squeue_running_jobs(rec: Recording) -> None:
    queue = rec.queue("squeue-running.json")
    for scenario in ("running", "cancelled", "timeout", "requeued", "resized"):
        job = queue[scenario]
        assert (job.state, job.name, job.user) == (JobState.RUNNING, f"compat-{scenario}", "hpcuser")
        assert job.partition in rec.partition.split(",")
        assert job.node_list and job.start_time and job.submit_time and job.uid
        assert (job.end_time, job.exit_code, job.restart_count) == (None, None, 0)
        assert job.limit_end and job.limit_end > job.start_time  # its time limit, for site mode's backfill plan
    assert queue["resized"].node_count == 2
    assert queue["running"].node_count == 1


def test_squeue_pending_job_has_reason_and_no_nodes(rec: Recording) -> None:
    job = rec.queue("squeue-running.json")["pending"]
    assert (job.state, job.reason, job.node_list, job.start_time) == (JobState.PENDING, "BeginTime", "", None)
    assert job.limit_end is None
    assert rec.text("squeue-state.txt").strip() == "PENDING"


def test_squeue_final_jobs_and_exit_codes(rec: Recording) -> None:
    queue = rec.queue("squeue-running.json")
    assert (queue["completed"].state, queue["completed"].exit_code) == (JobState.COMPLETED, 0)
    assert (queue["failed"].state, queue["failed"].exit_code) == (JobState.FAILED, 3)
    assert (queue["signalled"].state, queue["signalled"].exit_code) == (JobState.FAILED, 128 + 9)
    assert all(queue[s].end_time for s in ("completed", "failed", "signalled"))


def test_queue_asks_for_finished_jobs_which_squeue_hides_from_23_02(rec: Recording) -> None:
    asked: list[list[str]] = []

    def recorded(argv: list[str], timeout: float = 0.0) -> CommandResult:
        asked.append(argv)
        return CommandResult(tuple(argv), rec.text("squeue-running.json"), "")

    queue = SlurmClient(runner=recorded).queue()
    assert "--states=all" in asked[0]
    assert {r.job_id for r in queue if r.state.is_final} >= {rec.jobs[s] for s in ("completed", "failed", "signalled")}


def test_squeue_after_cancel_requeue_and_shrink(rec: Recording) -> None:
    queue = rec.queue("squeue-after-actions.json")
    assert queue["cancelled"].state is JobState.CANCELLED
    # Right after ``scontrol requeue`` the run may still be COMPLETING; either way not final.
    assert queue["requeued"].state in (JobState.RUNNING, JobState.PENDING)
    assert queue["requeued"].restart_count == 1
    assert (queue["resized"].state, queue["resized"].node_count) == (JobState.RUNNING, 1)
    assert (queue["selfresized"].state, queue["selfresized"].node_count) == (JobState.RUNNING, 1)


def test_shrink_from_inside_the_job_succeeds(rec: Recording) -> None:
    """hpcsched's driver shrinks its own allocation from the batch step, then reads the new one."""
    assert rec.text("scontrol-update-numnodes-in-job.txt").splitlines()[-1] == "rc=0"
    assert rec.runs()["selfresized"][-1].node_count == 1


def test_squeue_timeout_and_requeued_run(rec: Recording) -> None:
    queue = rec.queue("squeue-final.json")
    assert queue.get("timeout") is None or queue["timeout"].state is JobState.TIMEOUT
    assert (queue["requeued"].state, queue["requeued"].restart_count) == (JobState.RUNNING, 1)


def test_sacct_final_states_and_exit_codes(rec: Recording) -> None:
    last = {s: runs[-1] for s, runs in rec.runs().items()}
    assert (last["completed"].state, last["completed"].exit_code) == (JobState.COMPLETED, 0)
    assert last["failed"].state is JobState.FAILED and last["failed"].exit_code in (3, None)
    assert (last["signalled"].state, last["signalled"].exit_code) == (JobState.FAILED, 128 + 9)
    assert last["timeout"].state is JobState.TIMEOUT
    for scenario in ("pending", "running", "cancelled", "requeued", "resized"):
        assert last[scenario].state is JobState.CANCELLED, scenario
    assert all(r.end_time for r in last.values())


def test_sacct_requeued_job_has_each_run(rec: Recording) -> None:
    runs = rec.runs()["requeued"]
    assert [r.slurm_state.split()[0] for r in runs] == ["REQUEUED", "CANCELLED"]
    assert [r.state for r in runs] == [JobState.PENDING, JobState.CANCELLED]
    assert runs[0].start_time and runs[1].start_time and runs[0].start_time < runs[1].start_time


def test_sacct_shrunk_job_has_its_two_node_segment_then_one_node(rec: Recording) -> None:
    runs = rec.runs()["resized"]
    assert [(r.slurm_state, r.node_count) for r in runs] == [("RESIZING", 2), ("CANCELLED", 1)]


def test_sacct_never_started_job_has_no_start_or_nodes(rec: Recording) -> None:
    pending = rec.runs()["pending"][-1]
    assert (pending.state, pending.start_time, pending.node_list) == (JobState.CANCELLED, None, "")


def test_scontrol_show_job_after_shrink(rec: Recording) -> None:
    def recorded(argv: list[str], timeout: float = 0.0) -> CommandResult:
        return CommandResult(tuple(argv), rec.text("scontrol-job-resized.txt"), "")

    nodes, count = allocation_nodes(str(rec.jobs["resized"]), recorded)
    assert count == 1 and nodes and "," not in nodes


def test_sinfo_nodes_and_partitions_agree(rec: Recording) -> None:
    nodes = parse_sinfo_nodes(rec.text("sinfo-nodes.json"))
    partitions = {p.name: p for p in parse_partitions(rec.text("scontrol-partitions.txt"))}
    states = parse_node_states(rec.text("sinfo-node-states.txt"))
    assert {n.name for n in nodes} == set(states)
    assert partitions["debug"].default and not partitions["wide"].default
    for name, partition in partitions.items():
        members = [n for n in nodes if name in n.partitions]
        assert len(members) == partition.total_nodes
    assert sorted(n.gpus for n in nodes if "debug" in n.partitions) == [2, 2, 2]
    assert all(n.cpus == 4 for n in nodes)
    rows = parse_node_partitions(rec.text("sinfo-node-partitions.txt"))
    assert {(node, partition) for node, partition, _ in rows} == {(n.name, p) for n in nodes for p in n.partitions}
    assert 0 <= parse_idle_nodes(rec.text("sinfo-node-states.txt")) <= len(nodes)


def test_doctor_and_image_check_find_the_default_partition(rec: Recording) -> None:
    name, gres = partition_gres(rec.text("sinfo-partition-gres.txt"), "")
    assert name == "debug" and all(g.startswith("gpu:") for g in gres)
    assert set(partition_gres(rec.text("sinfo-partition-gres.txt"), "wide")[1]) == {"(null)"}
    up, skipped = partition_nodes(rec.text("sinfo-node-states-partitions.txt"), "wide")
    assert len(up) + len(skipped) == 8


NODE_FAIL_RECORDINGS = sorted(p for p in MAJORS if (p / "sacct-node-fail-requeued.json").is_file())


@pytest.mark.parametrize("major", NODE_FAIL_RECORDINGS, ids=[p.name for p in NODE_FAIL_RECORDINGS])
def test_C1_a_run_ended_by_a_node_failure_is_the_reason_of_the_requeue(major: Path) -> None:
    """sacct -D right after a node of a --requeue job went DOWN: the failed run, then the pending
    one, which from 23.02 has no start time at all. The requeue's reason is the node failure."""
    runs = parse_sacct((major / "sacct-node-fail-requeued.json").read_text())
    assert [r.state for r in runs] == [JobState.NODE_FAIL, JobState.PENDING]
    assert reason_from_runs(runs, restart_count=1) is AttemptReason.NODE_FAILURE
    assert reason_from_runs(list(reversed(runs)), restart_count=1) is AttemptReason.NODE_FAILURE
