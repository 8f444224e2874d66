"""The pure core of ``hpcsched report``: hpcsched's job records, Slurm's runs and the jobs'
progress lines in, a frozen :class:`Report` out. No files, commands or clocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpcsched.report.join import job_runs, pair_attempts, runs_by_slurm_id, usages
from hpcsched.report.totals import ratio, sum_known, totals, user_totals
from hpcsched.report.values import AttemptRow, AttemptWork, JobReport, Report, SlurmRun, Usage, Window
from hpcsched.report.work import attempt_work, job_work, total_steps

Progress = Sequence[Mapping[str, Any]]


def build_report(
    jobs: Sequence[Mapping[str, Any]],
    runs: Sequence[SlurmRun] | None,
    progress: Mapping[int, Progress],
    now: float,
    *,
    window: Window,
    store_id: str | None = None,
    accounting_error: str | None = None,
) -> Report:
    """``jobs`` are ``status`` job dicts (``Job.as_dict``), ``runs`` every run sacct listed (None
    when sacct could not be asked), ``progress`` each job's progress lines by job id."""
    by_slurm_id = runs_by_slurm_id(runs) if runs is not None else None
    reports = tuple(job_report(j, by_slurm_id, progress.get(int(j["id"]), ()), now, store_id) for j in jobs)
    error = None if runs is not None else accounting_error or "Slurm accounting was not read"
    return Report(window=window, now=now, accounting_error=error, jobs=reports, users=user_totals(reports),
                  cluster=totals("all", reports))


def job_report(job: Mapping[str, Any], runs: Mapping[int, Sequence[SlurmRun]] | None, records: Progress, now: float,
               store_id: str | None = None) -> JobReport:
    attempts = list(job.get("attempts") or ())
    if runs is None:
        pairs: list[tuple[Mapping[str, Any] | None, Usage | None]] = [(a, None) for a in attempts]
        accounting = "unavailable"
    else:
        mine = {slurm_id: usages(rs, now) for slurm_id, rs in job_runs(job, runs, store_id).items()}
        pairs, complete = pair_attempts(attempts, mine)
        accounting = "ok" if complete else "incomplete"
    done = attempt_work(records)
    by_number = {w.attempt: w for w in done}
    rows = tuple(_row(a, u, by_number) for a, u in pairs)
    sizes = {int(a["number"]): _int_or_none(a.get("nodes")) for a in attempts}
    work = job_work(done, sizes, total_steps(records)) if done else None
    used = [r.usage for r in rows if r.usage is not None] if accounting == "ok" else None
    node_hours = sum_known(u.node_hours for u in used) if used is not None else None
    newest = _newest(used or [])
    return JobReport(
        id=int(job["id"]), name=str(job.get("name") or ""), user=str(job.get("user") or ""),
        state=str(job.get("state") or ""), exit_code=_int_or_none(job.get("exit_code")),
        submit_time=float(job["created"]), accounting=accounting, attempts=rows,
        slurm_state=newest.slurm_state if newest else None,
        nodes=newest.nodes if newest and newest.start_time is not None else None,
        queue_wait=sum_known(u.queue_wait for u in used) if used is not None else None,
        run_time=sum_known(u.elapsed for u in used) if used is not None else None,
        node_hours=node_hours,
        cpu_hours=sum_known(u.cpu_hours for u in used) if used is not None else None,
        gpu_hours=sum_known(u.gpu_hours for u in used) if used is not None else None,
        work=work,
        utilisation=ratio(work.busy_node_hours if work else None, node_hours),
        useful_share=ratio(work.useful_node_hours if work else None, node_hours),
    )


def _row(attempt: Mapping[str, Any] | None, usage: Usage | None, work: Mapping[int, AttemptWork]) -> AttemptRow:
    if attempt is None:
        assert usage is not None
        return AttemptRow(number=None, reason="", state=usage.slurm_state, slurm_job_id=usage.slurm_job_id,
                          requested_nodes=None, usage=usage, work=None)
    number = int(attempt["number"])
    return AttemptRow(
        number=number, reason=str(attempt.get("reason") or ""), state=str(attempt.get("state") or ""),
        slurm_job_id=_int_or_none(attempt.get("slurm_job_id")), requested_nodes=_int_or_none(attempt.get("nodes")),
        usage=usage, work=work.get(number),
    )


def _newest(used: Sequence[Usage]) -> Usage | None:
    """The run Slurm started last (a pending one counts as newest)."""
    if not used:
        return None
    return max(used, key=lambda u: (u.submit_time or 0.0, u.start_time or float("inf")))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

