"""The pure report core on recorded data: hpcsched's records (``status --json``), the sacct output
and the progress lines recorded together from the local cluster (sacct-report-jobs*.json)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from hpcsched.jobs.progress import parse_lines
from hpcsched.report import Window, build_report
from hpcsched.report.sacct import merge_runs
from hpcsched.report.values import JobReport, Report, SlurmRun
from hpcsched.slurm.parse import parse_sacct

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"
SACCT = (FIXTURES / "sacct-report-jobs.json").read_text()
HPCSCHED = json.loads((FIXTURES / "sacct-report-jobs-hpcsched.json").read_text())
NOW = HPCSCHED["recorded"]
WINDOW = Window(since=NOW - 3600)


def progress() -> dict[int, list[dict[str, Any]]]:
    return {int(job): parse_lines("\n".join(lines)) for job, lines in HPCSCHED["progress"].items()}


def runs() -> tuple[SlurmRun, ...]:
    return merge_runs(parse_sacct(SACCT), SACCT)


def report(runs: tuple[SlurmRun, ...] | None, jobs: list[dict[str, Any]] | None = None) -> Report:
    return build_report(jobs or HPCSCHED["status"], runs, progress(), NOW, window=WINDOW,
                        store_id=HPCSCHED["daemon"]["store_id"], accounting_error=None if runs is not None else "boom")


def by_name(r: Report) -> dict[str, JobReport]:
    return {j.name: j for j in r.jobs}


def sacct_elapsed() -> dict[int, list[int]]:
    """ElapsedRaw of every run, by Slurm id, straight from the recorded JSON."""
    out: dict[int, list[int]] = defaultdict(list)
    for job in json.loads(SACCT)["jobs"]:
        out[job["job_id"]].append(job["time"]["elapsed"])
    return out


def test_run_time_node_count_and_state_match_sacct() -> None:
    elapsed = sacct_elapsed()
    jobs = by_name(report(runs()))
    expected_state = {"ok": "COMPLETED", "fail": "FAILED", "cancelled": "CANCELLED", "requeued": "COMPLETED",
                      "digits": "COMPLETED"}
    for name, job in jobs.items():
        slurm_id = job.attempts[-1].slurm_job_id
        assert slurm_id is not None
        assert job.accounting == "ok"
        assert job.run_time == sum(elapsed[slurm_id]), name
        assert job.nodes == 1 and job.slurm_state == expected_state[name] == job.state
        assert job.node_hours == pytest.approx(job.run_time / 3600)
        assert job.cpu_hours == pytest.approx(job.run_time / 3600) and job.gpu_hours == 0


def test_a_requeued_job_shows_every_run_with_its_reason() -> None:
    job = by_name(report(runs()))["requeued"]
    rows = [(a.number, a.reason, a.usage.slurm_state if a.usage else None) for a in job.attempts]
    assert rows == [(1, "submit", "REQUEUED"), (2, "requeue", "COMPLETED")]
    waits = [a.usage.queue_wait for a in job.attempts if a.usage]
    assert waits == [6, 33]  # the second includes the requeue hold (cred_expire, 30 s here)
    assert job.queue_wait == 39 and job.run_time == 6 + 16


def test_useful_work_and_goodput_of_the_job_that_reports_progress() -> None:
    jobs = by_name(report(runs()))
    digits = jobs["digits"]
    assert digits.work is not None and jobs["ok"].work is None
    assert (digits.work.step, digits.work.total_steps, digits.work.useful_steps, digits.work.redone_steps) == (180, 180, 180, 0)
    assert digits.work.restart_seconds == pytest.approx(40.0, abs=1.0)
    assert digits.work.goodput == digits.work.throughput and digits.work.efficiency is None
    assert digits.node_hours is not None and digits.work.busy_node_hours is not None
    assert digits.utilisation == pytest.approx(digits.work.busy_node_hours / digits.node_hours)
    # start-up of the container and torch takes seconds per attempt
    assert digits.utilisation is not None and 0.2 < digits.utilisation < 0.6


def test_without_accounting_hpcsched_values_stay_and_slurm_values_are_unknown() -> None:
    r = report(None)
    assert r.accounting_error == "boom"
    jobs = by_name(r)
    for job in jobs.values():
        assert job.accounting == "unavailable"
        assert (job.queue_wait, job.run_time, job.nodes, job.node_hours, job.cpu_hours, job.gpu_hours,
                job.slurm_state, job.utilisation, job.useful_share) == (None,) * 9
        assert all(a.usage is None for a in job.attempts)
    assert jobs["fail"].state == "FAILED" and jobs["cancelled"].state == "CANCELLED"
    assert [a.reason for a in jobs["requeued"].attempts] == ["submit", "requeue"]
    digits = jobs["digits"].work
    assert digits is not None and digits.useful_steps == 180 and digits.useful_node_hours is not None
    assert r.cluster.node_hours is None and r.cluster.unknown_jobs == 5
    assert r.cluster.useful_node_hours == digits.useful_node_hours and r.cluster.lost_node_hours is None


def test_a_job_whose_runs_are_missing_from_accounting_is_unknown_not_zero() -> None:
    partial = tuple(r for r in runs() if not (r.job_id == 64 and r.slurm_state == "COMPLETED"))
    r = report(partial)
    jobs = by_name(r)
    assert jobs["requeued"].accounting == "incomplete" and jobs["requeued"].node_hours is None
    assert jobs["requeued"].attempts[0].usage is not None  # the run that is there is still shown
    assert jobs["ok"].accounting == "ok" and jobs["ok"].node_hours is not None
    assert r.cluster.unknown_jobs == 1 and r.cluster.node_hours is None and r.cluster.queue_wait is None


def test_totals_per_user_and_cluster() -> None:
    alice = [dict(j, user="alice") for j in HPCSCHED["status"] if j["name"] in ("ok", "digits")]
    bob = [dict(j, user="bob") for j in HPCSCHED["status"] if j["name"] not in ("ok", "digits")]
    r = report(runs(), alice + bob)
    users = {t.name: t for t in r.users}
    assert sorted(users) == ["alice", "bob"]
    assert (users["alice"].jobs, users["alice"].attempts, users["bob"].jobs, users["bob"].attempts) == (2, 3, 3, 4)
    assert r.cluster.node_hours == pytest.approx(sum(t.node_hours or 0 for t in users.values()))
    assert r.cluster.run_time == sum(j.run_time or 0 for j in r.jobs)
    digits = by_name(r)["digits"]
    assert users["alice"].measured_node_hours == digits.node_hours
    assert users["alice"].useful_share == digits.useful_share
    assert users["bob"].measured_node_hours == 0 and users["bob"].useful_share is None
    assert r.cluster.queue_wait is not None
    assert r.cluster.mean_queue_wait == pytest.approx(r.cluster.queue_wait / 7)


def test_a_job_that_never_reached_slurm_got_nothing() -> None:
    submitting = {"id": 9, "name": "new", "user": "hpcuser", "state": "SUBMITTING", "created": NOW - 1,
                  "attempts": [{"number": 1, "reason": "submit", "state": "SUBMITTING", "nodes": 2,
                                "slurm_job_id": None, "start_time": None}]}
    job = report(runs(), [submitting]).jobs[0]
    assert job.accounting == "ok" and job.node_hours == 0 and job.run_time == 0
    assert job.nodes is None and job.slurm_state is None


def test_a_grown_and_shrunk_job_counts_each_node_second_once() -> None:
    """Recorded resize benchmark: attempt 1 on Slurm job 54, then grow (new job, 2 nodes) and
    shrink in place (same job, 1 node) alternating on 55-59. The older jobs 54-59 of an earlier
    controller state are not its runs."""
    text = (FIXTURES / "sacct-report-resize.json").read_text()
    recorded = json.loads((FIXTURES / "sacct-report-resize-hpcsched.json").read_text())
    slurm_ids = [54, 55, 55, 56, 56, 57, 57, 58, 58, 59, 59]
    attempts = [{"number": n, "reason": "resize" if n > 1 else "submit", "state": "STOPPED", "nodes": 2 if n % 2 == 0 else 1,
                 "slurm_job_id": s, "start_time": 0.0} for n, s in enumerate(slurm_ids, start=1)]
    job = {"id": 1, "name": "digits_cnn", "user": "hpcuser", "state": "CANCELLED", "created": 1795804783.0,
           "attempts": attempts}
    r = build_report([job], merge_runs(parse_sacct(text), text), {1: parse_lines("\n".join(recorded["progress"]))},
                     1795805000.0, window=WINDOW, store_id=recorded["store_id"])
    (j,) = r.jobs
    assert j.accounting == "ok" and len(j.attempts) == 11 and all(a.number for a in j.attempts)
    assert [a.usage.nodes for a in j.attempts if a.usage] == [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1]
    assert j.run_time == 138  # sacct's ElapsedRaw sum, 210, counts every shrunk allocation from its first start
    node_seconds = sum(a.usage.nodes * a.usage.elapsed for a in j.attempts if a.usage)
    assert j.node_hours == pytest.approx(node_seconds / 3600)
    assert j.slurm_state == "CANCELLED" and j.work is not None and j.work.useful_steps == 910

