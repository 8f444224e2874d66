"""Which Slurm runs belong to which hpcsched job and attempt, and what each run got (pure).

A run belongs to a job when its Slurm id is one of the job's attempts' ids and it was submitted
within the job's life: Slurm reuses job ids once its controller state is reset, so the number alone
never joins (B7). A run whose comment carries an hpcsched tag must carry this job's (store id and
job id); a run without a tag (a site whose accounting does not store comments) must have been
submitted after the job was created and, once every attempt of the job has ended, before the last
of them ended. Within one Slurm id, the k-th run
(by start time) is the k-th attempt (by number) that ran under that id: a requeue, a
self-requeue at the time limit and a shrink in place each give both a new attempt and a new run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hpcsched.planning.plan import parse_tag
from hpcsched.report.values import SlurmRun, Usage

CLOCK_SLACK = 60.0  # seconds a Slurm submit time may precede the job's creation (clock skew)


def runs_by_slurm_id(runs: Iterable[SlurmRun]) -> dict[int, list[SlurmRun]]:
    out: dict[int, list[SlurmRun]] = defaultdict(list)
    for run in runs:
        out[run.job_id].append(run)
    return out


def job_runs(job: Mapping[str, Any], runs: Mapping[int, Sequence[SlurmRun]], store_id: str | None) -> dict[int, list[SlurmRun]]:
    """The job's runs, by Slurm id, oldest first."""
    out: dict[int, list[SlurmRun]] = {}
    for slurm_id in slurm_ids(job):
        mine = [r for r in runs.get(slurm_id, ()) if _belongs(r, job, store_id)]
        out[slurm_id] = sorted(mine, key=_run_order)
    return out


def slurm_ids(job: Mapping[str, Any]) -> list[int]:
    seen: dict[int, None] = {}
    for a in job.get("attempts") or ():
        if isinstance(a.get("slurm_job_id"), int):
            seen[a["slurm_job_id"]] = None
    return list(seen)


def _belongs(run: SlurmRun, job: Mapping[str, Any], store_id: str | None) -> bool:
    if run.submit_time is not None and run.submit_time < float(job["created"]) - CLOCK_SLACK:
        return False  # an older Slurm job with the same id
    tag = parse_tag(run.comment)
    if tag is not None:
        return tag[1] == job["id"] and (store_id is None or tag[0] == store_id)
    ended = job_end(job)
    return ended is None or run.submit_time is None or run.submit_time <= ended + CLOCK_SLACK


def job_end(job: Mapping[str, Any]) -> float | None:
    """When the job's last attempt ended; None while any attempt has not (or has no attempts)."""
    ends = [a.get("end_time") for a in job.get("attempts") or ()]
    if not ends or not all(isinstance(e, (int, float)) for e in ends):
        return None
    return float(max(ends))


def _run_order(run: SlurmRun) -> tuple[float, float]:
    start = run.start_time if run.start_time is not None else float("inf")
    return start, run.submit_time or 0.0


def usages(runs: Sequence[SlurmRun], now: float) -> list[Usage]:
    """Usage of each run of one Slurm id (oldest first). After a shrink in place Slurm closes the
    old record and opens one that repeats the original start: that one starts where the previous
    ended, so no node-second is counted twice."""
    out = []
    previous_end: float | None = None
    for run in runs:
        out.append(usage(run, now, previous_end))
        if run.end_time is not None and run.start_time is not None:
            previous_end = run.end_time
    return out


def usage(run: SlurmRun, now: float, previous_end: float | None = None) -> Usage:
    start = run.start_time
    if start is not None and previous_end is not None:
        start = max(start, previous_end)
    end = run.end_time
    elapsed = max(0.0, (end if end is not None else now) - start) if start is not None else 0.0
    hours = elapsed / 3600.0
    return Usage(
        slurm_job_id=run.job_id, slurm_state=run.slurm_state, exit_code=run.exit_code, submit_time=run.submit_time,
        start_time=start, end_time=end, queue_wait=_queue_wait(run, start, now), elapsed=elapsed,
        nodes=run.nodes, node_list=run.node_list, node_hours=run.nodes * hours,
        cpu_hours=None if run.cpus is None else run.cpus * hours,
        gpu_hours=None if run.gpus is None else run.gpus * hours,
    )


def _queue_wait(run: SlurmRun, start: float | None, now: float) -> float | None:
    """Submit to start; for a run that never started, submit to its end (or to now while it waits)."""
    if run.submit_time is None:
        return None
    until = start if start is not None else (run.end_time if run.end_time is not None else now)
    return max(0.0, until - run.submit_time)


def pair_attempts(attempts: Sequence[Mapping[str, Any]], runs: Mapping[int, Sequence[Usage]]
                  ) -> tuple[list[tuple[Mapping[str, Any] | None, Usage | None]], bool]:
    """Pairs of (attempt, run usage) in attempt order, then runs hpcsched has no attempt for;
    and whether every attempt that hpcsched saw start has its run."""
    taken: dict[int, int] = defaultdict(int)
    pairs: list[tuple[Mapping[str, Any] | None, Usage | None]] = []
    complete = True
    for a in sorted(attempts, key=lambda a: int(a["number"])):
        slurm_id = a.get("slurm_job_id")
        mine = runs.get(slurm_id, ()) if isinstance(slurm_id, int) else ()
        k = taken[slurm_id] if isinstance(slurm_id, int) else 0
        run = mine[k] if k < len(mine) else None
        if isinstance(slurm_id, int) and run is not None:
            taken[slurm_id] += 1
        if a.get("start_time") is not None and (run is None or run.start_time is None):
            complete = False
        pairs.append((a, run))
    for slurm_id, mine in runs.items():
        pairs.extend((None, run) for run in mine[taken[slurm_id]:])
    return pairs, complete
