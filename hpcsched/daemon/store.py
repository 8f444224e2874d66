"""SQLite store of jobs, attempts and events, on local disk, written by the daemon only.

WAL mode and a busy timeout; one connection guarded by a lock, so the daemon's threads never see
"database is locked". Every change is one transaction: a job and its first attempt are committed
together before anything is submitted (intent before side effect).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from hpcsched.daemon import statedir
from hpcsched.errors import HpcschedError
from hpcsched.jobs import layout
from hpcsched.jobs.model import Attempt, AttemptReason, Job, JobState
from hpcsched.planning.fields import format_count

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    uid INTEGER NOT NULL,
    user TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    created REAL NOT NULL,
    job_dir TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    pending_nodes INTEGER,
    progress TEXT,
    progress_offset INTEGER NOT NULL DEFAULT 0,
    nonce TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS attempts (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    number INTEGER NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    nodes INTEGER NOT NULL,
    slurm_job_id INTEGER,
    node_list TEXT NOT NULL DEFAULT '',
    state_reason TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    submit_time REAL,
    start_time REAL,
    end_time REAL,
    log_path TEXT NOT NULL DEFAULT '',
    restart_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, number)
);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts(state);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""
# Columns added after the first release of the schema, for stores written by older versions.
_ADDED_COLUMNS = (
    ("jobs", "pending_nodes", "INTEGER"),
    ("jobs", "progress", "TEXT"),
    ("jobs", "progress_offset", "INTEGER NOT NULL DEFAULT 0"),
    ("attempts", "restart_count", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "nonce", "TEXT NOT NULL DEFAULT ''"),
)
_ATTEMPT_FIELDS = frozenset(
    {"state", "nodes", "slurm_job_id", "node_list", "state_reason", "exit_code", "submit_time",
     "start_time", "end_time", "log_path", "restart_count"}
)


class Store:
    def __init__(self, path: str, host: str = "") -> None:
        """Open (or create) the store at ``path``. A new store's id starts with ``host``, the login
        node whose daemon owns it, so two daemons of one user on two login nodes never share an id
        (the id names their job directories in the shared jobs directory)."""
        statedir.refuse_link(path)  # SQLite would follow it (G5)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA foreign_keys=ON")
        for statement in filter(None, (part.strip() for part in _SCHEMA.split(";"))):
            self._db.execute(statement)
        self._add_missing_columns()
        with self._tx():
            row = self._db.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
            if row is None:
                new_id = f"{host}-{uuid.uuid4().hex[:8]}" if host else uuid.uuid4().hex[:12]
                self._db.execute("INSERT INTO meta VALUES ('store_id', ?)", (new_id,))
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _add_missing_columns(self) -> None:
        """Upgrade a store written by an earlier version: add the columns it lacks (in one
        transaction; existing rows get the column's default)."""
        with self._tx():
            for table, column, definition in _ADDED_COLUMNS:
                present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock, self.path)

    @property
    def store_id(self) -> str:
        with self._lock:
            return str(self._db.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0])

    def integrity_ok(self) -> bool:
        with self._lock:
            return bool(self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # --- writes -------------------------------------------------------------------------------

    def next_job_id(self) -> int:
        """The id the next job gets unless told otherwise (ids are never reused)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='jobs'").fetchone()
            return int(row[0]) + 1 if row else 1

    def create_job(self, *, name: str, uid: int, user: str, request: dict[str, Any], nodes: int,
                   jobs_root: str, now: float, job_id: int | None = None) -> int:
        """Commit a job and its first attempt (state SUBMITTING) in one transaction. The job's
        directory is named after this store and the job (two stores never share one), and the job
        gets a random submission nonce, which its checkpoints carry (D4). ``job_id``: an id the
        caller reserved (above every id this store gave); default: the next one."""
        with self._tx():
            cur = self._db.execute(
                "INSERT INTO jobs (id, name, uid, user, state, request, created, nonce) VALUES (?,?,?,?,?,?,?,?)",
                (job_id, name, uid, user, JobState.SUBMITTING.value, json.dumps(request), now, secrets.token_hex(8)),
            )
            job_id = int(cur.lastrowid or 0)
            job_dir = layout.job_dir_path(jobs_root, self.store_id, job_id)
            self._db.execute("UPDATE jobs SET job_dir=? WHERE id=?", (job_dir, job_id))
            self._db.execute(
                "INSERT INTO attempts (job_id, number, reason, state, nodes, log_path) VALUES (?,?,?,?,?,?)",
                (job_id, 1, AttemptReason.SUBMIT.value, JobState.SUBMITTING.value, nodes, f"{job_dir}/attempt-1.log"),
            )
            self._event(job_id, now, "created", "")
        return job_id

    def update_attempt(self, job_id: int, number: int, now: float, **changes: Any) -> None:
        """Change fields of one attempt; a state change also becomes the job's state."""
        bad = set(changes) - _ATTEMPT_FIELDS
        if bad:
            raise ValueError(f"unknown attempt fields {sorted(bad)}")
        if not changes:
            return
        values = {k: (v.value if isinstance(v, JobState) else v) for k, v in changes.items()}
        assignments = ", ".join(f"{k}=?" for k in values)
        with self._tx():
            cur = self._db.execute(
                f"UPDATE attempts SET {assignments} WHERE job_id=? AND number=?",
                (*values.values(), job_id, number),
            )
            if cur.rowcount != 1:
                raise KeyError(f"job {job_id} has no attempt {number}")
            if "state" in values:
                latest = self._db.execute("SELECT MAX(number) FROM attempts WHERE job_id=?", (job_id,)).fetchone()[0]
                if latest == number:
                    self._db.execute("UPDATE jobs SET state=? WHERE id=?", (values["state"], job_id))
                self._event(job_id, now, "state", f"attempt {number}: {values['state']}")

    def add_attempt(self, job_id: int, number: int, now: float, *, reason: AttemptReason, state: JobState,
                    nodes: int, slurm_job_id: int | None, restart_count: int = 0, log_path: str) -> None:
        """A new attempt (resize, requeue); it becomes the job's current one."""
        with self._tx():
            self._db.execute(
                "INSERT INTO attempts (job_id, number, reason, state, nodes, slurm_job_id, restart_count, log_path)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (job_id, number, reason.value, state.value, nodes, slurm_job_id, restart_count, log_path),
            )
            self._db.execute("UPDATE jobs SET state=? WHERE id=?", (state.value, job_id))
            self._event(job_id, now, "attempt", f"attempt {number}: {reason.value}, {format_count(nodes, 'node')}")

    def remove_attempt(self, job_id: int, number: int, now: float, why: str) -> None:
        """Undo an attempt that never reached Slurm (a resize whose sbatch was refused)."""
        with self._tx():
            self._db.execute("DELETE FROM attempts WHERE job_id=? AND number=?", (job_id, number))
            row = self._db.execute("SELECT state FROM attempts WHERE job_id=? ORDER BY number DESC LIMIT 1",
                                   (job_id,)).fetchone()
            if row is not None:
                self._db.execute("UPDATE jobs SET state=? WHERE id=?", (row[0], job_id))
            self._event(job_id, now, "attempt_removed", f"attempt {number}: {why}")

    def set_progress(self, job_id: int, summary: dict[str, Any] | None, offset: int) -> None:
        with self._tx():
            self._db.execute("UPDATE jobs SET progress=?, progress_offset=? WHERE id=?",
                             (json.dumps(summary) if summary else None, offset, job_id))

    def progress_offset(self, job_id: int) -> int:
        with self._lock:
            row = self._db.execute("SELECT progress_offset FROM jobs WHERE id=?", (job_id,)).fetchone()
            return int(row[0]) if row else 0

    def set_pending_nodes(self, job_id: int, nodes: int | None) -> None:
        with self._tx():
            self._db.execute("UPDATE jobs SET pending_nodes=? WHERE id=?", (nodes, job_id))

    def pending_nodes(self, job_id: int) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT pending_nodes FROM jobs WHERE id=?", (job_id,)).fetchone()
            return int(row[0]) if row and row[0] is not None else None

    def request_cancel(self, job_id: int, now: float) -> None:
        with self._tx():
            self._db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
            self._event(job_id, now, "cancel_requested", "")

    def record_event(self, job_id: int | None, now: float, kind: str, detail: str = "") -> None:
        with self._tx():
            self._event(job_id, now, kind, detail)

    def _event(self, job_id: int | None, now: float, kind: str, detail: str) -> None:
        self._db.execute("INSERT INTO events (job_id, time, kind, detail) VALUES (?,?,?,?)", (job_id, now, kind, detail))

    # --- reads --------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        jobs = self._select_jobs("WHERE id=?", (job_id,))
        return jobs[0] if jobs else None

    def list_jobs(self, uid: int | None = None, limit: int = 1000) -> list[Job]:
        """The newest ``limit`` jobs (of user ``uid``, or of everyone), oldest first."""
        if uid is None:
            return self._select_jobs("WHERE id IN (SELECT id FROM jobs ORDER BY id DESC LIMIT ?)", (limit,))
        return self._select_jobs("WHERE id IN (SELECT id FROM jobs WHERE uid=? ORDER BY id DESC LIMIT ?)", (uid, limit))

    def open_jobs(self) -> list[Job]:
        """Jobs whose newest attempt is not final: what the monitor and the submitter look at."""
        finals = tuple(s.value for s in JobState if s.is_final)
        return self._select_jobs(f"WHERE state NOT IN ({','.join('?' for _ in finals)})", finals)

    def events(self, job_id: int) -> list[tuple[float, str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT time, kind, detail FROM events WHERE job_id=? ORDER BY id", (job_id,))
            return [(r[0], r[1], r[2]) for r in rows.fetchall()]

    def _select_jobs(self, where: str, params: tuple[Any, ...]) -> list[Job]:
        """The jobs ``where`` selects (a condition on the jobs table), in id order, each with its
        attempts: two queries however many jobs (the monitor reads every open job several times
        a cycle), read from one snapshot of the store."""
        attempts: dict[int, list[Attempt]] = collections.defaultdict(list)
        with self._snapshot():
            rows = self._db.execute(f"SELECT * FROM jobs {where} ORDER BY id", params).fetchall()
            for a in self._db.execute(f"SELECT * FROM attempts WHERE job_id IN (SELECT id FROM jobs {where}) "
                                      "ORDER BY job_id, number", params):
                attempts[a["job_id"]].append(_attempt(a))
        return [_job(r, attempts[r["id"]]) for r in rows]

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction (WAL: it never waits for a writer), unless one is open already."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")


def _job(row: sqlite3.Row, attempts: Iterable[Attempt]) -> Job:
    return Job(
        id=row["id"], name=row["name"], user=row["user"], uid=row["uid"], state=JobState(row["state"]),
        request=json.loads(row["request"]), created=row["created"], job_dir=row["job_dir"],
        cancel_requested=bool(row["cancel_requested"]), attempts=tuple(attempts),
        progress=json.loads(row["progress"]) if row["progress"] else None, nonce=row["nonce"],
    )


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(
        job_id=row["job_id"], number=row["number"], reason=AttemptReason(row["reason"]),
        state=JobState(row["state"]), nodes=row["nodes"], slurm_job_id=row["slurm_job_id"],
        node_list=row["node_list"], state_reason=row["state_reason"], exit_code=row["exit_code"],
        submit_time=row["submit_time"], start_time=row["start_time"], end_time=row["end_time"],
        log_path=row["log_path"], restart_count=row["restart_count"],
    )


class StoreWriteError(HpcschedError):
    """The store could not be written (a full disk or quota, an I/O error); the change was rolled back."""


# SQLite's words for a write the disk refused: SQLITE_FULL, and SQLITE_IOERR (an exceeded quota).
_REFUSED_WRITES = ("database or disk is full", "disk i/o error")


def refused_write(error: BaseException | None, path: str) -> StoreWriteError | None:
    """The user-facing error for a write the disk refused, or None for any other error."""
    if not isinstance(error, sqlite3.OperationalError) or not any(w in str(error).lower() for w in _REFUSED_WRITES):
        return None
    return StoreWriteError(f"the daemon's store {path} could not be written ({error}): is the disk or your quota "
                           f"there full? (`df -h {os.path.dirname(path)}`, `quota`); nothing of this request "
                           "was recorded, try again once there is room")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock; ROLLBACK on any exception. A write the
    disk refused raises :class:`StoreWriteError` naming the store."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, path: str) -> None:
        self._db = db
        self._lock = lock
        self._path = path

    def __enter__(self) -> None:
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        failed = exc
        try:
            if failed is None:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.OperationalError as e:
                    failed = e
            if failed is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            self._lock.release()
        refused = refused_write(failed, self._path)
        if refused is not None:
            raise refused from failed
        if failed is not None and exc is None:
            raise failed
