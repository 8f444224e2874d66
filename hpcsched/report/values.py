"""The frozen values of a report: Slurm runs, attempts, jobs, totals.

Units: times are seconds since the epoch, durations seconds, resources node-, CPU- and GPU-hours.
``None`` means *unknown* (accounting unreachable, a run missing from it, a field Slurm did not
report), never zero: a report shows it as unknown rather than as a number it cannot vouch for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """The jobs a report covers: those active at some time in ``[since, until]``."""

    since: float
    until: float | None = None  # None: up to now


@dataclass(frozen=True)
class SlurmRun:
    """One run of a Slurm job as accounting saw it (``sacct -D`` lists every requeued run)."""

    job_id: int
    user: str
    comment: str
    slurm_state: str  # Slurm's word: COMPLETED, REQUEUED, RESIZING, CANCELLED, ...
    exit_code: int | None
    submit_time: float | None
    start_time: float | None  # None: never started
    end_time: float | None  # None: still running or still waiting
    nodes: int
    node_list: str
    cpus: int | None  # allocated TRES; None when Slurm reported none
    gpus: int | None
    name: str = ""  # the Slurm job's name

    @property
    def started(self) -> bool:
        return self.start_time is not None


@dataclass(frozen=True)
class Usage:
    """What one run got from Slurm. A run that follows a shrink in place starts when the shrink
    happened (Slurm repeats the original start time on the new record)."""

    slurm_job_id: int
    slurm_state: str
    exit_code: int | None
    submit_time: float | None
    start_time: float | None
    end_time: float | None
    queue_wait: float | None
    elapsed: float
    nodes: int
    node_list: str
    node_hours: float
    cpu_hours: float | None
    gpu_hours: float | None


@dataclass(frozen=True)
class AttemptWork:
    """Training progress of one attempt, from its progress lines."""

    attempt: int
    first_step: int  # the step it started (or resumed) from
    last_step: int
    samples: int
    span: float  # seconds from its first to its last "step" progress line
    kept_steps: int  # steps that the final state of the job builds on
    redone_steps: int  # steps a later attempt computed again (it resumed from an earlier point)
    restart_gap: float | None  # last step of the previous attempt -> first step of this one
    throughput: float | None  # samples per second
    efficiency: float | None  # mean statistical efficiency reported by the job, if any

    @property
    def goodput(self) -> float | None:
        """Throughput times the statistical efficiency, or the throughput when none was reported."""
        if self.throughput is None:
            return None
        return self.throughput * self.efficiency if self.efficiency is not None else self.throughput


@dataclass(frozen=True)
class AttemptRow:
    """One attempt of a job: hpcsched's record joined with the Slurm run it ran as.

    ``number`` is None for a run Slurm accounted that hpcsched has no attempt for."""

    number: int | None
    reason: str
    state: str
    slurm_job_id: int | None
    requested_nodes: int | None
    usage: Usage | None
    work: AttemptWork | None


@dataclass(frozen=True)
class JobWork:
    """Useful and lost work of a job that reports progress."""

    step: int
    total_steps: int | None
    useful_steps: int
    redone_steps: int
    restart_seconds: float
    busy_node_hours: float | None  # nodes x time while stepping
    useful_node_hours: float | None  # the part of it whose steps were kept
    redone_node_hours: float | None  # the part of it whose steps were computed again
    throughput: float | None
    goodput: float | None
    efficiency: float | None


@dataclass(frozen=True)
class JobReport:
    id: int
    name: str
    user: str
    state: str
    exit_code: int | None
    submit_time: float
    accounting: str  # "ok", "unavailable" (sacct failed) or "incomplete" (runs missing from it)
    attempts: tuple[AttemptRow, ...]
    slurm_state: str | None
    nodes: int | None  # of the newest run that started
    queue_wait: float | None
    run_time: float | None
    node_hours: float | None
    cpu_hours: float | None
    gpu_hours: float | None
    work: JobWork | None
    utilisation: float | None  # busy / allocated node-hours
    useful_share: float | None  # useful / allocated node-hours


@dataclass(frozen=True)
class Totals:
    """Sums over a set of jobs; a sum is unknown when one of its terms is."""

    name: str  # the user, or "all"
    jobs: int
    attempts: int
    unknown_jobs: int  # jobs whose Slurm-derived values are unknown
    queue_wait: float | None
    mean_queue_wait: float | None
    run_time: float | None
    node_hours: float | None
    cpu_hours: float | None
    gpu_hours: float | None
    measured_node_hours: float | None  # allocated to jobs that report progress
    busy_node_hours: float | None
    useful_node_hours: float | None
    utilisation: float | None
    useful_share: float | None

    @property
    def lost_node_hours(self) -> float | None:
        """Allocated to jobs that report progress but not spent on kept steps."""
        if self.measured_node_hours is None or self.useful_node_hours is None:
            return None
        return max(0.0, self.measured_node_hours - self.useful_node_hours)


@dataclass(frozen=True)
class Report:
    window: Window
    now: float
    accounting_error: str | None  # why Slurm accounting could not be read; None when it could
    jobs: tuple[JobReport, ...]
    users: tuple[Totals, ...]
    cluster: Totals
