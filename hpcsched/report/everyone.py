"""The operators' report of every user's jobs (``report --all-users``), from Slurm accounting
alone (pure).

One ``sacct --allusers`` call lists every run in the window. The runs hpcsched tagged
(``hpcsched:<store id>:<job id>`` in the comment) are grouped into that user's hpcsched job, one
attempt per run, as the user's own report pairs them; every other run is a plain Slurm job of its
own (its id is the Slurm id). hpcsched's records and the jobs' progress lines live in each user's
store and job directory, which an operator's report does not read: what the jobs cost (queue
wait, node-, CPU- and GPU-hours) is Slurm's, and their useful work shows as unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hpcsched.planning.plan import parse_tag
from hpcsched.report.build import build_report
from hpcsched.report.values import Report, SlurmRun, Window

PLAIN = ""  # the store id of a plain Slurm job's group


def group_runs(runs: Iterable[SlurmRun]) -> dict[tuple[str, str, int], list[SlurmRun]]:
    """Runs by (user, store id, job id): an hpcsched job's runs together, a plain job's alone."""
    groups: dict[tuple[str, str, int], list[SlurmRun]] = {}
    for run in runs:
        tag = parse_tag(run.comment)
        key = (run.user, *tag) if tag is not None else (run.user, PLAIN, run.job_id)
        groups.setdefault(key, []).append(run)
    return groups


def job_record(key: tuple[str, str, int], runs: Sequence[SlurmRun]) -> dict[str, Any]:
    """A ``status``-like job dict made from accounting: one attempt per run, oldest first."""
    user, store, job_id = key
    ordered = sorted(runs, key=lambda r: (r.submit_time or 0.0, r.start_time or float("inf")))
    attempts = [{"number": n, "reason": "", "state": r.slurm_state, "slurm_job_id": r.job_id, "nodes": r.nodes}
                for n, r in enumerate(ordered, start=1)]
    first = ordered[0]
    return {"id": job_id, "name": first.name if store == PLAIN else f"{first.name} (hpcsched, store {store})",
            "user": user, "state": ordered[-1].slurm_state, "created": first.submit_time or 0.0,
            "attempts": attempts}


def all_users_report(runs: Sequence[SlurmRun], now: float, window: Window, user: str | None = None) -> Report:
    """Every user's jobs (or ``user``'s only) from the window's runs."""
    groups = group_runs(r for r in runs if user is None or r.user == user)
    jobs = [job_record(key, group) for key, group in sorted(groups.items())]
    return build_report(jobs, runs, {}, now, window=window)
