"""Parsers of Slurm's JSON, tested on output recorded from Slurm 22.05.8 on the local cluster
(tests/fixtures/slurm-22.05/) and, where marked, on synthetic samples of newer layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcsched.jobs.model import JobState
from hpcsched.slurm.parse import (
    V0038,
    V0039,
    NodeRecord,
    PartitionRecord,
    SlurmJobRecord,
    SlurmParseError,
    detect_schema,
    gpu_count,
    parse_partitions,
    parse_sacct,
    parse_sbatch_parsable,
    parse_sinfo_nodes,
    parse_squeue,
    parse_version,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text()


def by_id(records: list[SlurmJobRecord]) -> dict[int, SlurmJobRecord]:
    assert len({r.job_id for r in records}) == len(records), "one record per job id expected"
    return {r.job_id: r for r in records}


@pytest.fixture(scope="module")
def queue() -> dict[int, SlurmJobRecord]:
    return by_id(parse_squeue(recorded("squeue-mixed.json")))


@pytest.fixture(scope="module")
def queue_after_cancel() -> dict[int, SlurmJobRecord]:
    return by_id(parse_squeue(recorded("squeue-cancel-requeue.json")))


@pytest.fixture(scope="module")
def accounting() -> list[SlurmJobRecord]:
    return parse_sacct(recorded("sacct-mixed.json"))


# --- squeue, Slurm 22.05 (recorded) -------------------------------------------------------------


def test_squeue_lists_every_recorded_job(queue: dict[int, SlurmJobRecord]) -> None:
    assert sorted(queue) == [3, 4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    ("job_id", "state", "slurm_state"),
    [
        (3, JobState.COMPLETED, "COMPLETED"),
        (4, JobState.COMPLETED, "COMPLETED"),
        (5, JobState.FAILED, "FAILED"),
        (6, JobState.RUNNING, "RUNNING"),
        (7, JobState.PENDING, "PENDING"),
        (8, JobState.PENDING, "PENDING"),
        (9, JobState.PENDING, "PENDING"),
    ],
)
def test_squeue_state_per_job(queue: dict[int, SlurmJobRecord], job_id: int, state: JobState, slurm_state: str) -> None:
    assert (queue[job_id].state, queue[job_id].slurm_state) == (state, slurm_state)


def test_squeue_raw_wait_status_768_is_exit_code_3(queue: dict[int, SlurmJobRecord]) -> None:
    assert queue[5].exit_code == 3


def test_squeue_completed_job_exits_0(queue: dict[int, SlurmJobRecord]) -> None:
    assert queue[4].exit_code == 0


def test_squeue_job_cancelled_by_sigterm_exits_143(queue_after_cancel: dict[int, SlurmJobRecord]) -> None:
    job = queue_after_cancel[6]
    assert (job.state, job.exit_code) == (JobState.CANCELLED, 128 + 15)


@pytest.mark.parametrize("job_id", [6, 7, 8, 9])
def test_squeue_job_not_yet_ended_has_no_exit_code_nor_end_time(queue: dict[int, SlurmJobRecord], job_id: int) -> None:
    assert (queue[job_id].exit_code, queue[job_id].end_time) == (None, None)


@pytest.mark.parametrize(
    ("job_id", "count", "node_list"),
    [(3, 2, "node[1-2]"), (4, 1, "node1"), (5, 1, "node2"), (6, 2, "node[2-3]"), (7, 3, ""), (9, 1, "")],
)
def test_squeue_node_count_and_list(queue: dict[int, SlurmJobRecord], job_id: int, count: int, node_list: str) -> None:
    assert (queue[job_id].node_count, queue[job_id].node_list) == (count, node_list)


@pytest.mark.parametrize(("job_id", "reason"), [(7, "Resources"), (8, "Priority"), (9, "JobHeldUser"), (5, "NonZeroExitCode")])
def test_squeue_reason(queue: dict[int, SlurmJobRecord], job_id: int, reason: str) -> None:
    assert queue[job_id].reason == reason


def test_squeue_comment_carries_the_hpcsched_tag(queue: dict[int, SlurmJobRecord]) -> None:
    assert {i: queue[i].comment for i in (3, 4, 9)} == {
        3: "hpcsched:5f92ce96e3df:1", 4: "hpcsched:fixture:1", 9: "hpcsched:fixture:6"
    }


def test_squeue_times_of_a_finished_job(queue: dict[int, SlurmJobRecord]) -> None:
    job = queue[4]
    assert (job.submit_time, job.start_time, job.end_time) == (1795800730.0, 1795800730.0, 1795800731.0)


def test_squeue_pending_job_has_no_start_time_although_slurm_prints_an_estimate(queue: dict[int, SlurmJobRecord]) -> None:
    assert queue[7].start_time is None
    assert queue[9].start_time is None


def test_squeue_running_job_has_start_but_no_end_time(queue: dict[int, SlurmJobRecord]) -> None:
    assert (queue[6].start_time, queue[6].end_time) == (1795800730.0, None)


def test_squeue_user_and_name(queue: dict[int, SlurmJobRecord]) -> None:
    assert (queue[3].user, queue[3].name) == ("hpcuser", "allreduce")


def test_squeue_requeued_job_is_pending_with_its_restart_count(queue_after_cancel: dict[int, SlurmJobRecord]) -> None:
    job = queue_after_cancel[8]
    assert (job.state, job.restart_count, job.reason) == (JobState.PENDING, 1, "BeginTime")


def test_squeue_pending_job_that_started_is_running_on_its_nodes(queue_after_cancel: dict[int, SlurmJobRecord]) -> None:
    job = queue_after_cancel[7]
    assert (job.state, job.node_list, job.start_time) == (JobState.RUNNING, "node[1-3]", 1795800738.0)


# --- sacct, Slurm 22.05 (recorded) --------------------------------------------------------------


def test_sacct_lists_every_run_including_both_runs_of_a_requeued_job(accounting: list[SlurmJobRecord]) -> None:
    assert [r.job_id for r in accounting] == [8, 1, 2, 3, 4, 5, 6, 7, 8]


def test_sacct_failed_job_with_22_05_return_code_0_has_unknown_exit_code(accounting: list[SlurmJobRecord]) -> None:
    # Slurm 22.05 sacct --json prints return_code 0 for job 5, which exited 3.
    job5 = next(r for r in accounting if r.job_id == 5)
    assert job5.state is JobState.FAILED
    assert job5.exit_code is None


def test_sacct_completed_job_exits_0(accounting: list[SlurmJobRecord]) -> None:
    job4 = next(r for r in accounting if r.job_id == 4)
    assert (job4.state, job4.exit_code) == (JobState.COMPLETED, 0)


@pytest.mark.parametrize(
    ("job_id", "state"), [(1, JobState.COMPLETED), (5, JobState.FAILED), (6, JobState.CANCELLED), (7, JobState.CANCELLED)]
)
def test_sacct_state_per_job(accounting: list[SlurmJobRecord], job_id: int, state: JobState) -> None:
    assert next(r for r in accounting if r.job_id == job_id).state is state


def test_sacct_cancelled_job_without_a_signal_has_unknown_exit_code(accounting: list[SlurmJobRecord]) -> None:
    assert next(r for r in accounting if r.job_id == 6).exit_code is None


def test_sacct_requeued_runs_are_pending(accounting: list[SlurmJobRecord]) -> None:
    runs = [r for r in accounting if r.job_id == 8]
    assert [(r.slurm_state, r.state) for r in runs] == [("REQUEUED", JobState.PENDING)] * 2
    assert [r.start_time for r in runs] == [1795800735.0, 1795800861.0]


def test_sacct_comment_is_read_from_the_job_comment(accounting: list[SlurmJobRecord]) -> None:
    comments = {r.job_id: r.comment for r in accounting}
    assert comments[5] == "hpcsched:fixture:2"
    assert comments[2] == ""


def test_sacct_nodes_and_times_of_a_finished_job(accounting: list[SlurmJobRecord]) -> None:
    job7 = next(r for r in accounting if r.job_id == 7)
    assert (job7.node_count, job7.node_list) == (3, "node[1-3]")
    assert (job7.submit_time, job7.start_time, job7.end_time) == (1795800730.0, 1795800738.0, 1795800743.0)


# --- schema detection and malformed input -------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "schema"),
    [
        ({"plugin": {"type": "openapi/v0.0.38"}}, V0038),
        ({"plugin": {"type": "openapi/dbv0.0.38"}}, V0038),
        ({"plugin": {"type": "", "data_parser": "data_parser/v0.0.39"}}, V0039),
        ({"plugin": {"type": "", "data_parser": "data_parser/v0.0.40"}}, V0039),
        ({"plugins": {"data_parser": "data_parser/v0.0.41"}}, V0039),
    ],
)
def test_detect_schema_from_meta(meta: dict[str, Any], schema: object) -> None:
    assert detect_schema(meta) is schema


@pytest.mark.parametrize("meta", [{}, {"plugin": {"type": "openapi/v0.0.35"}}, {"plugin": {"type": "something/else"}}])
def test_unknown_schema_is_an_error_naming_it(meta: dict[str, Any]) -> None:
    with pytest.raises(SlurmParseError, match="unrecognised Slurm JSON schema"):
        detect_schema(meta)


@pytest.mark.parametrize("text", ["", "squeue: error: slurm_load_jobs", "[]", '{"meta": {}}', '{"jobs": {}}'])
def test_output_that_is_not_a_job_document_is_a_parse_error(text: str) -> None:
    with pytest.raises(SlurmParseError):
        parse_squeue(text)


# --- newer layout (SYNTHETIC sample, hand-built: no cluster of that version was recorded) -------


def _n(value: int) -> dict[str, Any]:
    return {"set": True, "infinite": False, "number": value}


_UNSET = {"set": False, "infinite": False, "number": 0}
_META_V0040 = {"plugin": {"type": "", "name": "", "data_parser": "data_parser/v0.0.40"}}


def _exit(code: int, signal: int | None = None) -> dict[str, Any]:
    return {"status": ["SIGNALED" if signal else "EXITED"], "return_code": _n(code),
            "signal": {"id": _n(signal) if signal else _UNSET, "name": ""}}


def test_synthetic_v0040_squeue_document_parses() -> None:
    doc = {
        "meta": _META_V0040,
        "jobs": [
            {"job_id": 41, "name": "t", "comment": "hpcsched:x:1", "job_state": ["FAILED"], "state_reason": "NonZeroExitCode",
             "node_count": _n(2), "nodes": "node[1-2]", "submit_time": _n(100), "start_time": _n(110),
             "end_time": _n(120), "exit_code": _exit(3), "restart_cnt": 1, "user_name": "alice"},
            {"job_id": 42, "name": "p", "comment": "", "job_state": ["PENDING", "REQUEUED"], "state_reason": "Priority",
             "node_count": _n(1), "nodes": "", "submit_time": _n(100), "start_time": _n(0),
             "end_time": {"set": True, "infinite": True, "number": 0}, "exit_code": _exit(0), "restart_cnt": 0},
        ],
    }
    failed, pending = parse_squeue(json.dumps(doc))
    assert (failed.state, failed.exit_code, failed.node_count, failed.node_list) == (JobState.FAILED, 3, 2, "node[1-2]")
    assert (failed.submit_time, failed.start_time, failed.end_time) == (100.0, 110.0, 120.0)
    assert (failed.comment, failed.restart_count, failed.user) == ("hpcsched:x:1", 1, "alice")
    assert (pending.state, pending.reason, pending.start_time, pending.end_time) == (JobState.PENDING, "Priority", None, None)


def test_synthetic_v0040_squeue_job_killed_by_a_signal_exits_128_plus_signal() -> None:
    job = {"job_id": 43, "job_state": ["CANCELLED"], "exit_code": _exit(0, signal=15)}
    (record,) = parse_squeue(json.dumps({"meta": _META_V0040, "jobs": [job]}))
    assert (record.state, record.exit_code) == (JobState.CANCELLED, 143)


def test_synthetic_v0040_sacct_document_parses() -> None:
    doc = {
        "meta": _META_V0040,
        "jobs": [
            {"job_id": 51, "name": "f", "comment": {"job": "hpcsched:x:2"}, "state": {"current": ["FAILED"], "reason": "None"},
             "allocation_nodes": _n(1), "nodes": "node3", "exit_code": _exit(3),
             "time": {"submission": _n(10), "start": _n(11), "end": _n(12)}},
            {"job_id": 52, "state": {"current": ["CANCELLED"], "reason": "None"}, "nodes": "None assigned",
             "exit_code": _exit(0, signal=9), "time": {"submission": _n(10), "start": _n(0), "end": _n(13)}},
        ],
    }
    failed, cancelled = parse_sacct(json.dumps(doc))
    assert (failed.state, failed.exit_code, failed.comment, failed.node_count) == (JobState.FAILED, 3, "hpcsched:x:2", 1)
    assert (failed.submit_time, failed.start_time, failed.end_time) == (10.0, 11.0, 12.0)
    assert (cancelled.state, cancelled.exit_code, cancelled.node_list, cancelled.start_time) == (
        JobState.CANCELLED, 128 + 9, "", None
    )


def test_synthetic_v0038_sacct_job_killed_by_a_signal_exits_128_plus_signal() -> None:
    # 22.05 layout, hand-built: the recorded fixture holds no signalled job.
    job = {"job_id": 61, "state": {"current": "CANCELLED", "reason": "None"},
           "exit_code": {"status": "SIGNALED", "return_code": 0, "signal": {"signal_id": 9, "name": "KILL"}}}
    (record,) = parse_sacct(json.dumps({"meta": {"plugin": {"type": "openapi/dbv0.0.38"}}, "jobs": [job]}))
    assert (record.state, record.exit_code) == (JobState.CANCELLED, 137)


# --- sbatch --parsable and sinfo --version ------------------------------------------------------


@pytest.mark.parametrize(("text", "job_id"), [("123", 123), ("123\n", 123), ("123;cluster", 123), ("123;hpclocal\n", 123)])
def test_sbatch_parsable_job_id(text: str, job_id: int) -> None:
    assert parse_sbatch_parsable(text) == job_id


@pytest.mark.parametrize("text", ["", "garbage", "Submitted batch job 123", ";cluster", "-1"])
def test_sbatch_output_without_a_job_id_is_a_parse_error_quoting_it(text: str) -> None:
    with pytest.raises(SlurmParseError, match="sbatch printed no job id"):
        parse_sbatch_parsable(text)


@pytest.mark.parametrize(
    ("text", "version"),
    [("slurm-wlm 22.05.8", (22, 5, 8)), ("slurm 24.11.1", (24, 11, 1)), ("slurm 23.02", (23, 2, 0)),
     ("slurm 23.11.0-0rc1\n", (23, 11, 0))],
)
def test_slurm_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version


def test_recorded_sinfo_version_is_22_05_8() -> None:
    assert parse_version(recorded("sinfo-version.txt")) == (22, 5, 8)


@pytest.mark.parametrize("text", ["", "slurm", "slurm x.y.z"])
def test_unreadable_version_is_a_parse_error(text: str) -> None:
    with pytest.raises(SlurmParseError, match="cannot read a Slurm version"):
        parse_version(text)


# --- partitions and nodes (recorded with a second partition "small": node[1-2], MaxNodes=1,
# MaxCPUsPerNode=2, next to the default "debug": node[1-3], 4 CPUs each, no GPUs) --------------


def test_recorded_partitions_with_their_node_limits() -> None:
    assert parse_partitions(recorded("scontrol-partitions.txt")) == [
        PartitionRecord("debug", default=True, state="UP", total_nodes=3, max_nodes=None, max_cpus_per_node=None),
        PartitionRecord("small", default=False, state="UP", total_nodes=2, max_nodes=1, max_cpus_per_node=2),
    ]


def test_partition_output_without_partitions_is_empty() -> None:
    assert parse_partitions("No partitions in the system\n") == []


def test_recorded_sinfo_nodes_with_partitions_and_cpus() -> None:
    assert parse_sinfo_nodes(recorded("sinfo-nodes.json")) == [
        NodeRecord("node1", ("debug", "small"), cpus=4, gpus=0),
        NodeRecord("node2", ("debug", "small"), cpus=4, gpus=0),
        NodeRecord("node3", ("debug",), cpus=4, gpus=0),
    ]


@pytest.mark.parametrize("text", ["", "{}", '{"nodes": 3}', "[]"])
def test_sinfo_output_without_a_node_list_is_a_parse_error(text: str) -> None:
    with pytest.raises(SlurmParseError):
        parse_sinfo_nodes(text)


@pytest.mark.parametrize(
    ("gres", "gpus"),
    # synthetic: the local cluster has no GPUs; these are the layouts slurm.conf's Gres= prints
    [("", 0), ("(null)", 0), ("gpu:4", 4), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2,gpu:v100:1", 3),
     ("gpu:4(S:0,1)", 4), ("shard:8,gpu:2", 2), ("mps:100", 0)],
)
def test_gpu_count_from_generic_resources(gres: str, gpus: int) -> None:
    assert gpu_count(gres) == gpus
