"""Per-user and cluster-wide totals of job reports (pure).

A total is unknown when one of its terms is: a sum that silently left out a job whose runs are
missing from accounting would be a wrong number presented as right. ``unknown_jobs`` says how
many jobs made it so. Utilisation and the useful share are measured over the jobs that report
progress (their allocated node-hours are ``measured_node_hours``), since only those say what
their nodes did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from hpcsched.report.values import JobReport, Totals


def user_totals(jobs: Sequence[JobReport]) -> tuple[Totals, ...]:
    by_user: dict[str, list[JobReport]] = defaultdict(list)
    for job in jobs:
        by_user[job.user].append(job)
    return tuple(totals(user, by_user[user]) for user in sorted(by_user))


def totals(name: str, jobs: Sequence[JobReport]) -> Totals:
    known = all(j.accounting == "ok" for j in jobs)
    waits = [r.usage.queue_wait for j in jobs for r in j.attempts if r.usage is not None]
    queue_wait = sum_known(waits) if known else None
    progressing = [j for j in jobs if j.work is not None]
    measured = sum_known(j.node_hours for j in progressing)
    busy = sum_known(j.work.busy_node_hours for j in progressing if j.work is not None)
    useful = sum_known(j.work.useful_node_hours for j in progressing if j.work is not None)
    return Totals(
        name=name,
        jobs=len(jobs),
        attempts=sum(len(j.attempts) for j in jobs),
        unknown_jobs=sum(1 for j in jobs if j.accounting != "ok"),
        queue_wait=queue_wait,
        mean_queue_wait=queue_wait / len(waits) if queue_wait is not None and waits else None,
        run_time=sum_known(j.run_time for j in jobs),
        node_hours=sum_known(j.node_hours for j in jobs),
        cpu_hours=sum_known(j.cpu_hours for j in jobs),
        gpu_hours=sum_known(j.gpu_hours for j in jobs),
        measured_node_hours=measured,
        busy_node_hours=busy,
        useful_node_hours=useful,
        utilisation=ratio(busy, measured),
        useful_share=ratio(useful, measured),
    )


def sum_known(values: Iterable[float | None]) -> float | None:
    """The sum, or None when any term is unknown."""
    total = 0.0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, at most 1 (progress times and Slurm's whole seconds may differ by a second);
    unknown when either is, or when nothing was allocated."""
    if part is None or whole is None or whole <= 0:
        return None
    return min(1.0, part / whole)
