"""The report's sacct reader, on sacct output recorded from Slurm 22.05.8 on the local cluster:
sacct-report-jobs.json (a completed, a failed, a cancelled and two requeued jobs) and
sacct-report-resize.json (grow and shrink in place, and older jobs with the same ids)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcsched.planning.plan import parse_tag
from hpcsched.report.sacct import allocated_tres, merge_runs
from hpcsched.report.values import SlurmRun
from hpcsched.slurm.parse import V0038, V0039, SlurmParseError, parse_sacct

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"


def runs_of(name: str) -> tuple[SlurmRun, ...]:
    text = (FIXTURES / name).read_text()
    return merge_runs(parse_sacct(text), text)


def test_every_run_of_a_requeued_job_is_listed_with_its_own_times() -> None:
    runs = [r for r in runs_of("sacct-report-jobs.json") if r.job_id == 64]
    assert [r.slurm_state for r in runs] == ["REQUEUED", "COMPLETED"]
    first, second = sorted(runs, key=lambda r: r.start_time or 0)
    assert first.end_time is not None and first.start_time is not None
    assert first.end_time - first.start_time == 6  # ElapsedRaw of the requeued run
    assert second.submit_time == first.end_time  # Slurm resubmits the job when it requeues it
    assert second.end_time is not None and second.start_time is not None
    assert second.end_time - second.start_time == 16


def test_allocated_tres_and_states_of_the_recorded_jobs() -> None:
    runs = {r.job_id: r for r in runs_of("sacct-report-jobs.json") if r.slurm_state != "REQUEUED"}
    assert {i: r.slurm_state for i, r in runs.items()} == {
        61: "COMPLETED", 62: "FAILED", 63: "CANCELLED", 64: "COMPLETED", 65: "COMPLETED"}
    assert all(r.nodes == 1 and r.cpus == 1 and r.gpus == 0 for r in runs.values())
    assert runs[61].exit_code == 0
    assert runs[62].exit_code is None  # sacct 22.05 prints return code 0 for a failed job: unknown
    assert runs[63].node_list == "node3"
    assert parse_tag(runs[65].comment) == ("60c9ea30b078", 5)


def test_the_record_before_a_shrink_in_place_has_ended() -> None:
    runs = [r for r in runs_of("sacct-report-resize.json") if r.job_id == 56 and r.comment]
    resizing, after = sorted(runs, key=lambda r: (r.start_time or 0, r.submit_time or 0))
    assert (resizing.slurm_state, resizing.nodes, resizing.node_list) == ("RESIZING", 2, "node[1,3]")
    assert resizing.end_time == after.submit_time
    assert after.start_time == resizing.start_time  # Slurm repeats the original start
    assert (after.slurm_state, after.nodes) == ("COMPLETED", 1)


def test_older_jobs_with_the_same_id_have_no_hpcsched_tag() -> None:
    runs = [r for r in runs_of("sacct-report-resize.json") if r.job_id == 54]
    assert sorted(parse_tag(r.comment) is None for r in runs) == [False, True]


def test_a_run_cancelled_while_pending_holds_nothing_and_has_left_the_queue() -> None:
    """Its end is when it left the queue: without it the queue wait grew at every report."""
    doc = json.loads((FIXTURES / "sacct-report-jobs.json").read_text())
    job = doc["jobs"][0]
    job.update(nodes="None assigned", allocation_nodes=0)
    job["time"].update(start=job["time"]["end"], elapsed=0)
    job["state"]["current"] = "CANCELLED"
    text = json.dumps({"meta": doc["meta"], "jobs": [job]})
    (run,) = merge_runs(parse_sacct(text), text)
    assert not run.started and run.end_time == job["time"]["end"]
    assert (run.nodes, run.cpus, run.gpus, run.node_list) == (0, 0, 0, "")


def test_a_run_still_pending_has_no_end() -> None:
    doc = json.loads((FIXTURES / "sacct-report-jobs.json").read_text())
    job = doc["jobs"][0]
    job.update(nodes="None assigned", allocation_nodes=0)
    job["time"].update(start=0, end=0, elapsed=0)
    job["state"]["current"] = "PENDING"
    text = json.dumps({"meta": doc["meta"], "jobs": [job]})
    (run,) = merge_runs(parse_sacct(text), text)
    assert not run.started and run.end_time is None


def test_a_running_run_has_no_end_yet() -> None:
    doc = json.loads((FIXTURES / "sacct-report-jobs.json").read_text())
    job = doc["jobs"][0]
    job["state"]["current"] = "RUNNING"
    job["time"]["end"] = 0
    text = json.dumps({"meta": doc["meta"], "jobs": [job]})
    (run,) = merge_runs(parse_sacct(text), text)
    assert run.started and run.end_time is None


GPU_TRES: list[dict[str, Any]] = [
    {"type": "cpu", "name": None, "id": 1, "count": 16},
    {"type": "node", "name": None, "id": 4, "count": 2},
    {"type": "gres", "name": "gpu", "id": 1001, "count": 8},
    {"type": "gres", "name": "gpu:a100", "id": 1002, "count": 8},
]


def test_gpus_count_the_untyped_gres_once() -> None:
    assert allocated_tres(V0038, GPU_TRES) == (16, 8)
    assert allocated_tres(V0038, [GPU_TRES[0], GPU_TRES[3]]) == (16, 8)  # only typed: summed


def test_tres_in_the_wrapped_number_layout() -> None:
    """v0.0.39+ may wrap counts as {"set", "infinite", "number"} (synthetic sample)."""
    wrapped = [{**t, "count": {"set": True, "infinite": False, "number": t["count"]}} for t in GPU_TRES]
    assert allocated_tres(V0039, wrapped) == (16, 8)


def test_no_tres_listed_is_unknown_not_zero() -> None:
    assert allocated_tres(V0038, []) == (None, None)
    assert allocated_tres(V0038, None) == (None, None)


def test_output_that_does_not_match_its_records_is_refused() -> None:
    text = (FIXTURES / "sacct-report-jobs.json").read_text()
    with pytest.raises(SlurmParseError):
        merge_runs(parse_sacct(text)[:-1], text)
    with pytest.raises(SlurmParseError):
        merge_runs([], "sacct: error: not json")


@pytest.mark.parametrize(("comment", "tag"), [
    ("hpcsched:abc:12", ("abc", 12)),
    ("hpcsched:abc:12:a3", ("abc", 12)),
    ("hpcsched:abc", None),
    ("hpcsched:abc:x", None),
    ("my comment", None),
    ("", None),
])
def test_parse_tag(comment: str, tag: tuple[str, int] | None) -> None:
    assert parse_tag(comment) == tag
