"""Resizing a running elastic job (``hpcsched resize``; the rebalancer will use the same path).

- shrink in place: ask the batch driver to shrink (``resize-request.json``), signal it; the
  ranks checkpoint, the driver releases nodes with ``scontrol update NumNodes`` and starts the
  next attempt on the nodes kept — no trip through the queue;
- grow, make-before-break: submit a successor allocation of the new size while training goes on;
  when it starts, its driver asks the old allocation to checkpoint and takes over;
- requeue (on request): checkpoint, ``scontrol requeue``, new node count while pending. Slurm
  holds a requeued job for ``cred_expire`` seconds before it may run again.

Every resize is a new attempt with reason "resize", committed before anything is signalled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from hpcsched.daemon.store import Store
from hpcsched.daemon.submission import Submitter
from hpcsched.errors import HpcschedError, ValidationError
from hpcsched.jobs import layout
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.planning.fields import format_count, parse_nodes
from hpcsched.site.citizen import may_take_free_nodes
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord
from hpcsched.slurm.runner import SlurmCommandError

MODES = ("auto", "shrink", "grow", "requeue")
# A held hand-over (Handovers) is looked at again after this long.
HELD_RECHECK_S = 30.0


def resize_in_flight(job: Job, request_pending: bool, started: bool) -> str | None:
    """Why a resize of ``job`` is still under way, or None (pure). ``request_pending``: the
    driver has not taken the last resize request yet; ``started``: the driver has started the
    newest attempt. A second resize before the first is carried out would pile up attempts that
    never run (found by the crash loop: four shrinks of one job, each recorded RUNNING)."""
    cur = job.current
    if cur is None:
        return None
    if request_pending:
        return f"job {job.id} has a resize request its allocation has not taken yet"
    if waiting_successor(job) is not None or (cur.reason is AttemptReason.RESIZE and cur.slurm_job_id is None):
        return f"job {job.id} is growing: attempt {cur.number} waits for its allocation"
    if cur.reason is AttemptReason.RESIZE and not started:
        return f"job {job.id} is being resized: attempt {cur.number} has not started yet"
    return None


def check_resizable(job: Job, nodes: int, mode: str) -> None:
    """Refuse, with the reason, what cannot be resized (pure)."""
    if mode not in MODES:
        raise ValidationError("--mode", f"{mode!r} is not one of {', '.join(MODES)}")
    allowed = parse_nodes(str(job.request.get("nodes", "1")))
    if not allowed.elastic:
        raise HpcschedError(f"job {job.id} was submitted with a fixed node count ({allowed}); "
                            "submit with --nodes MIN-MAX to make it elastic")
    if not (job.progress and job.progress.get("elastic")):
        raise HpcschedError(f"job {job.id} does not use the hpcsched runtime library (no progress reported "
                            "yet), so it cannot stop at a checkpoint and is never resized")
    if not allowed.min <= nodes <= allowed.max:
        raise ValidationError("--nodes", f"{nodes} is outside the job's range {allowed}")
    cur = job.current
    if job.cancel_requested:
        raise HpcschedError(f"job {job.id} is being cancelled; it cannot be resized")
    if cur is None or cur.state is not JobState.RUNNING:
        raise HpcschedError(f"job {job.id} is {job.state.value}; only a running job can be resized")
    if nodes == cur.nodes and mode != "requeue":
        raise ValidationError("--nodes", f"job {job.id} already runs on {format_count(nodes, 'node')}")
    if mode == "shrink" and nodes > cur.nodes:
        raise ValidationError("--mode", "shrink needs fewer nodes than the job has")
    if mode == "grow" and nodes < cur.nodes:
        raise ValidationError("--mode", "grow needs more nodes than the job has")


class Resizer:
    def __init__(self, store: Store, client: SlurmClient, submitter: Submitter, clock: Callable[[], float]) -> None:
        self.store = store
        self.client = client
        self.submitter = submitter
        self.clock = clock

    def resize(self, job: Job, nodes: int, mode: str = "auto") -> Job:
        check_resizable(job, nodes, mode)
        cur = job.current
        busy = resize_in_flight(job, layout.resize_request(job.job_dir).exists(),
                                cur is not None and layout.attempt_dir(job.job_dir, cur.number).exists())
        if busy:
            raise HpcschedError(f"{busy}; try again once it runs at its new size")
        cur = job.current
        assert cur is not None and cur.slurm_job_id is not None
        if mode == "auto":
            mode = "shrink" if nodes < cur.nodes else "grow"
        if mode == "requeue" and nodes > cur.nodes:
            raise ValidationError("--mode", "requeue can keep or lower the node count; grow makes a job larger")
        self.store.record_event(job.id, self.clock(), "resize", f"{cur.nodes} -> {format_count(nodes, 'node')} ({mode})")
        if mode == "grow":
            return self._grow(job, nodes)
        return self._in_allocation(job, nodes, mode)

    def _in_allocation(self, job: Job, nodes: int, mode: str) -> Job:
        cur = job.current
        assert cur is not None and cur.slurm_job_id is not None
        now = self.clock()
        if mode == "shrink":
            self.store.add_attempt(job.id, cur.number + 1, now, reason=AttemptReason.RESIZE, state=JobState.PENDING,
                                   nodes=nodes, slurm_job_id=cur.slurm_job_id, restart_count=cur.restart_count,
                                   log_path=str(layout.log_path(job.job_dir, cur.number + 1)))
        else:
            self.store.set_pending_nodes(job.id, nodes)
        layout.write_json(layout.resize_request(job.job_dir), {"mode": mode, "nodes": nodes, "time": now})
        try:
            self.client.signal_batch(cur.slurm_job_id, "USR1")
        except SlurmCommandError as e:
            layout.resize_request(job.job_dir).unlink(missing_ok=True)
            if mode == "shrink":  # withdrawn: the job goes on as it was (never CANCELLED by this)
                self.store.remove_attempt(job.id, cur.number + 1, self.clock(), f"resize not carried out: {e}")
            else:
                self.store.set_pending_nodes(job.id, None)
            raise
        return self._reload(job.id)

    def _grow(self, job: Job, nodes: int) -> Job:
        cur = job.current
        assert cur is not None
        self.store.add_attempt(job.id, cur.number + 1, self.clock(), reason=AttemptReason.RESIZE,
                               state=JobState.SUBMITTING, nodes=nodes, slurm_job_id=None,
                               restart_count=0, log_path=str(layout.log_path(job.job_dir, cur.number + 1)))
        return self.submitter.submit(job.id)

    def _reload(self, job_id: int) -> Job:
        job = self.store.get_job(job_id)
        assert job is not None
        return job


def waiting_successor(job: Job) -> tuple[Attempt, Attempt] | None:
    """(running predecessor, pending grown successor) of a job that is growing, else None (pure)."""
    if len(job.attempts) < 2:
        return None
    cur, previous = job.attempts[-1], job.attempts[-2]
    if (cur.reason is AttemptReason.RESIZE and cur.state is JobState.PENDING and cur.slurm_job_id is not None
            and previous.state is JobState.RUNNING and previous.slurm_job_id != cur.slurm_job_id):
        return previous, cur
    return None


def ahead_of(successor: SlurmJobRecord, queue: Iterable[SlurmJobRecord]) -> SlurmJobRecord | None:
    """A job that Slurm would serve before ``successor`` on the nodes a hand-over frees, or None
    (pure): another job waiting for nodes (reason Resources or Priority) in one of the successor's
    partitions, with a priority at least as high. Slurm would start it there, or keep the nodes
    for it (a backfill reservation), and the successor would not start on them.

    A pending job Slurm has not looked at yet (reason None: its scheduler has not run since the
    submission, which took 6 s and more on the local cluster while jobs were starting) counts too:
    its next pass may well start it on the freed nodes."""
    mine = set(successor.partition.split(","))
    for r in queue:
        if (r.job_id != successor.job_id and may_take_free_nodes(r)
                and r.priority >= successor.priority and mine & set(r.partition.split(","))):
            return r
    return None


class Handovers:
    """Make-before-break needs room for the new allocation beside the old one. When the successor
    waits only for nodes the job itself holds (idle nodes + the old allocation's >= the new
    size), the old allocation checkpoints and hands its nodes over; the successor, first in the
    queue, starts on them. Idle nodes count only in the successor's partition. One ``sinfo`` per
    partition per cycle, and only while a job is growing.

    Not while a job of anybody that Slurm ranks first waits for nodes in that partition
    (:func:`ahead_of`, one ``squeue`` of all users): the freed nodes would go to it, and the job
    would wait in the queue with no allocation instead of training on. The grow waits instead, and
    the hand-over is looked at again after ``HELD_RECHECK_S`` (not every cycle: that ``squeue`` of
    all users is the most expensive query a daemon makes, and a held grow may wait for hours)."""

    def __init__(self, store: Store, client: SlurmClient, clock: Callable[[], float]) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.requested: set[tuple[int, int]] = set()
        self.held: dict[tuple[int, int], float] = {}  # hand-overs held back (told once): when to look again

    def check(self, jobs: list[Job], queue: Mapping[int, SlurmJobRecord]) -> None:
        now = self.clock()
        growing = [pair for pair in map(waiting_successor, jobs) if pair is not None]
        growing = [(old, new) for old, new in growing if (old.job_id, new.number) not in self.requested
                   and new.slurm_job_id in queue and self.held.get((old.job_id, new.number), 0.0) <= now]
        if not growing:
            return
        idle_by_partition: dict[str, int] = {}
        everyone: list[SlurmJobRecord] | None = None
        for old, new in growing:
            partition = queue[new.slurm_job_id].partition if new.slurm_job_id is not None else ""
            if partition not in idle_by_partition:
                idle_by_partition[partition] = self.client.idle_nodes(partition)
            if idle_by_partition[partition] + old.nodes < new.nodes or old.slurm_job_id is None:
                continue
            everyone = self.client.queue_all() if everyone is None else everyone
            first = ahead_of(queue[new.slurm_job_id], everyone) if new.slurm_job_id is not None else None
            job = self.store.get_job(old.job_id)
            assert job is not None
            if first is not None:
                if (old.job_id, new.number) not in self.held:
                    self.store.record_event(job.id, now, "handover_held",
                                            f"Slurm job {first.job_id} waits for nodes in {first.partition} ahead of "
                                            f"attempt {new.number}; the job trains on at {old.nodes} node(s)")
                self.held[(old.job_id, new.number)] = now + HELD_RECHECK_S
                continue
            layout.write_json(layout.resize_request(job.job_dir), {"mode": "handover", "nodes": new.nodes,
                                                                   "time": self.clock()})
            self.store.record_event(job.id, self.clock(), "handover",
                                    f"attempt {old.number} hands its {format_count(old.nodes, 'node')} to attempt {new.number}")
            self.requested.add((old.job_id, new.number))
            self.client.signal_batch(old.slurm_job_id, "USR1")


def resend_pending_requests(store: Store, client: SlurmClient) -> int:
    """After a restart: a resize whose request was written but whose attempt never started (the
    daemon died before or right after signalling) is signalled again, so it completes (A7)."""
    sent = 0
    for job in store.open_jobs():
        cur = job.current
        if cur is None or len(job.attempts) < 2 or cur.reason is not AttemptReason.RESIZE:
            continue
        previous = job.attempts[-2]
        pending = layout.resize_request(job.job_dir).exists() and cur.state is JobState.PENDING
        started = layout.attempt_dir(job.job_dir, cur.number).exists()
        if pending and not started and previous.slurm_job_id is not None and previous.slurm_job_id == cur.slurm_job_id:
            try:
                client.signal_batch(previous.slurm_job_id, "USR1")
                sent += 1
            except SlurmCommandError:
                pass  # the allocation is gone; the monitor records what became of it
    return sent
