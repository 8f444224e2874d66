"""How one of a user's open jobs enters a sizing pass (pure): the personal pass and the site
coordinator (through the user's agent) describe jobs the same way.

Only elastic jobs (a node range) count, and of running ones only those whose script uses the
runtime library (it announced itself): only they can stop at a checkpoint when asked. Everything
else is left to Slurm and, to the pass, is rigid. A running job not measured yet is described by
the model's prior, as a waiting one is, and says so (``measured``); ``sizes_seen`` counts the
node counts it has step times at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpcsched.daemon.rebalance_plan import elastic_job, observations, waiting, waiting_job
from hpcsched.daemon.resize import waiting_successor
from hpcsched.jobs.model import Job, JobState
from hpcsched.planning.fields import parse_nodes

from .decide import Reported


def describe(job: Job, records: Sequence[Mapping[str, Any]], now: float, store: str = "") -> Reported | None:
    """The pass's view of ``job`` (module docstring), or None for a job it treats as rigid."""
    cur = job.current
    if cur is None or cur.slurm_job_id is None or not parse_nodes(str(job.request.get("nodes", "1"))).elastic:
        return None
    pair = waiting_successor(job)
    related: tuple[int, ...] = ()
    if waiting(job):
        return Reported(cur.slurm_job_id, job.uid, job.user, job.id, job.name, waiting_job(job, records, now, 0.0),
                        received=now, measured=False, store=store, sizes_seen=0)
    if not (cur.state is JobState.RUNNING or pair is not None) or not (job.progress and job.progress.get("elastic")):
        return None
    running = pair[0] if pair is not None else cur
    if pair is not None and pair[1].slurm_job_id is not None:
        related = (pair[1].slurm_job_id,)
    if running.slurm_job_id is None:
        return None
    measured = elastic_job(job, records, now, 0.0)
    view = measured or waiting_job(job, records, now, 0.0)
    sizes = len({o.num_nodes for o in observations(job, records)}) if measured is not None else 0
    return Reported(running.slurm_job_id, job.uid, job.user, job.id, job.name, view, related, now,
                    measured is not None, store, sizes)
