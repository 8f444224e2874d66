"""The report's I/O: hpcsched's records from the daemon, Slurm's runs from ONE ``sacct`` call, and
each job's progress lines. Everything it talks to is in :class:`Sources`, so tests replace it.

When sacct fails or does not answer in time, the report goes on without it: the error is kept
and the Slurm-derived values are unknown. Nothing else about accounting is fatal.
"""

from __future__ import annotations

import gc
import json
import os
import pwd
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hpcsched.config import Settings
from hpcsched.daemon import client
from hpcsched.errors import AccessDenied, JobNotFound, ValidationError
from hpcsched.jobs.layout import progress_file
from hpcsched.jobs.progress import parse_lines
from hpcsched.report.build import build_report
from hpcsched.report.everyone import all_users_report
from hpcsched.report.sacct import merge_runs
from hpcsched.report.values import Report, SlurmRun, Window
from hpcsched.report.window import accounting_start, select_jobs
from hpcsched.site.run import slurm_operator
from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmParseError
from hpcsched.slurm.runner import CommandResult, Runner, SlurmCommandError, run_slurm

STATUS_LIMIT = 1_000_000  # every job the daemon holds for the caller


def _login_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


@dataclass(frozen=True)
class Sources:
    """Where a report's inputs come from."""

    call: Callable[..., Any] = client.call
    ensure_daemon: Callable[[Settings], dict[str, Any]] = client.ensure_daemon
    runner: Runner = run_slurm
    clock: Callable[[], float] = time.time
    whoami: Callable[[], str] = field(default=_login_name)
    is_operator: Callable[[Settings], bool] = field(default=lambda settings: site_operator(settings))


@dataclass(frozen=True)
class Request:
    window: Window
    user: str | None = None
    job_ids: tuple[int, ...] = ()
    sacct_timeout: float = 60.0


def make_report(settings: Settings, request: Request, sources: Sources | None = None) -> Report:
    sources = sources or Sources()
    ping = sources.ensure_daemon(settings)
    operator = bool(ping.get("operator"))
    me = sources.whoami()
    if request.user is not None and request.user != me and not operator:
        raise AccessDenied(f"--user {request.user}: in personal mode a report covers your own jobs ({me}) only; "
                           "other users' jobs need an operator of a site daemon")
    now = sources.clock()
    jobs = list(sources.call(settings, "status", {"limit": STATUS_LIMIT}))  # the daemon shows whom the caller may see
    chosen = select_jobs(jobs, request.window, now, request.user, request.job_ids)
    missing = sorted(set(request.job_ids) - {int(j["id"]) for j in chosen})
    if missing:
        raise JobNotFound(f"no job {', '.join(map(str, missing))}")
    runs: Sequence[SlurmRun] | None = ()
    error = None
    with collector_paused():
        if chosen:
            try:
                runs = fetch_runs(sources.runner, chosen, request, own_only=not operator)
            except (SlurmCommandError, SlurmParseError) as e:
                runs, error = None, str(e)
        progress = {int(j["id"]): read_progress(str(j.get("job_dir") or "")) for j in chosen}
        return build_report(chosen, runs, progress, now, window=request.window,
                            store_id=ping.get("store_id"), accounting_error=error)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Parsing sacct's JSON makes millions of small objects (10,000 runs are ~100 MB), which sets
    off full cyclic collections that find nothing (the report holds no cycles) and triple the
    time. Reference counting still frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def fetch_runs(runner: Runner, jobs: Sequence[Mapping[str, Any]], request: Request, own_only: bool) -> tuple[SlurmRun, ...]:
    """Every run of the jobs' Slurm ids from one ``sacct --json -D`` call."""
    ids = sorted({a["slurm_job_id"] for j in jobs for a in j.get("attempts") or () if a.get("slurm_job_id")})
    return sacct_runs(runner, request, accounting_start(jobs, request.window), ids if request.job_ids else None, own_only)


def sacct_runs(runner: Runner, request: Request, since: float, ids: Sequence[int] | None, own_only: bool,
               until: float | None = None) -> tuple[SlurmRun, ...]:
    """Runs from one ``sacct --json -D`` call, through SlurmClient with a runner that keeps
    sacct's output (the records lack the TRES a report needs)."""
    outputs: list[str] = []

    def keep_output(argv: Sequence[str], **kwargs: Any) -> CommandResult:
        kwargs["timeout"] = min(float(kwargs.get("timeout", request.sacct_timeout)), request.sacct_timeout)
        result = runner(argv, **kwargs)
        outputs.append(result.stdout)
        return result

    records = SlurmClient(runner=keep_output, only_own_jobs=own_only).accounting(since=since, job_ids=ids, until=until)
    return merge_runs(records, outputs[-1])


def make_all_users_report(settings: Settings, request: Request, sources: Sources | None = None) -> Report:
    """Every user's jobs in the window, from one ``sacct --allusers`` call (:mod:`.everyone`),
    for operators only."""
    sources = sources or Sources()
    if request.job_ids:
        raise ValidationError("--job", "names jobs of your own store; with --all-users narrow by --user or the window")
    if not sources.is_operator(settings):
        raise AccessDenied(f"--all-users is for operators (the site's operator list, or Slurm's AdminLevel Operator "
                           f"or Administrator); {sources.whoami()} is not one")
    now = sources.clock()
    with collector_paused():
        try:
            runs = sacct_runs(sources.runner, request, request.window.since, None, own_only=False,
                              until=request.window.until)
        except (SlurmCommandError, SlurmParseError) as e:
            return build_report([], None, {}, now, window=request.window, accounting_error=str(e))
        return all_users_report(runs, now, request.window, request.user)


def site_operator(settings: Settings) -> bool:
    """Whether the caller is an operator, judged as the site coordinator judges it: by the
    coordinator itself when one is configured (it knows the caller from the kernel and holds the
    site's operator list), else by Slurm's AdminLevel. An operator list in the caller's own
    settings proves nothing, so it is not consulted here."""
    if settings.coordinator_socket:
        ping = client.send(settings.coordinator_socket, "ping", who="site coordinator")
        return isinstance(ping, dict) and ping.get("operator") is True
    return slurm_operator(_login_name())


def read_progress(job_dir: str) -> list[dict[str, Any]]:
    """The job's progress lines (JSON only; torn lines skipped); none when there is no readable file.

    The lines are decoded as one JSON array, which is several times faster than line by line;
    a torn or foreign line sends the file to the line-by-line reader, which skips it."""
    if not job_dir:
        return []
    try:
        text = progress_file(job_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    try:
        records = json.loads("[" + ",".join(line for line in text.splitlines() if line.strip()) + "]")
    except json.JSONDecodeError:
        return parse_lines(text)
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("time"), (int, float))]
