"""The SQLite store (a file in tmp_path): intent committed before submission, job state follows
the newest attempt, final jobs leave the open set; lists of jobs load every job's attempts in one
query and give what loading each job on its own gives."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from hpcsched.daemon.store import Store, StoreWriteError
from hpcsched.jobs.model import AttemptReason, Job, JobState

REQUEST = {"script": "/w/train.py", "workdir": "/w", "nodes": "2"}
REQUEST_1_3 = {"script": "/w/train.py", "workdir": "/w", "nodes": "1-3"}


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "store.sqlite")


@pytest.fixture
def store(db_path: str) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def create(store: Store, name: str = "train") -> int:
    return store.create_job(name=name, uid=1000, user="alice", request=REQUEST, nodes=2, jobs_root="/jobs", now=100.0)


def add_attempt(db_path: str, job_id: int, number: int) -> None:
    """A requeue's next attempt (the store has no call for it yet), written as another process would."""
    with closing(sqlite3.connect(db_path)) as db, db:
        db.execute("INSERT INTO attempts (job_id, number, reason, state, nodes) VALUES (?,?,?,?,?)",
                   (job_id, number, AttemptReason.REQUEUE.value, JobState.PENDING.value, 2))


def test_created_job_and_its_first_attempt_are_committed_in_submitting(store: Store, db_path: str) -> None:
    job_id = create(store)
    with closing(Store(db_path)) as other:
        job = other.get_job(job_id)
    assert job is not None
    assert (job.name, job.user, job.uid, job.state, job.request, job.created) == (
        "train", "alice", 1000, JobState.SUBMITTING, REQUEST, 100.0
    )
    assert job.job_dir == f"/jobs/{store.store_id}-{job_id}"
    (first,) = job.attempts
    assert (first.number, first.reason, first.state, first.nodes, first.slurm_job_id) == (
        1, AttemptReason.SUBMIT, JobState.SUBMITTING, 2, None
    )
    assert first.log_path == f"/jobs/{store.store_id}-{job_id}/attempt-1.log"


def test_job_ids_increase(store: Store) -> None:
    assert create(store) < create(store)


def test_state_change_of_the_newest_attempt_becomes_the_job_state(store: Store) -> None:
    job_id = create(store)
    store.update_attempt(job_id, 1, 101.0, state=JobState.RUNNING, slurm_job_id=42, node_list="node[1-2]")
    job = store.get_job(job_id)
    assert job is not None and job.state is JobState.RUNNING
    assert job.attempts[0].slurm_job_id == 42 and job.attempts[0].node_list == "node[1-2]"


def test_state_change_of_an_older_attempt_leaves_the_job_state(store: Store, db_path: str) -> None:
    job_id = create(store)
    store.update_attempt(job_id, 1, 101.0, state=JobState.PENDING)
    add_attempt(db_path, job_id, 2)
    store.update_attempt(job_id, 1, 102.0, state=JobState.PREEMPTED)
    job = store.get_job(job_id)
    assert job is not None
    assert job.state is JobState.PENDING
    assert [a.state for a in job.attempts] == [JobState.PREEMPTED, JobState.PENDING]


def test_state_changes_are_recorded_as_events(store: Store) -> None:
    job_id = create(store)
    store.update_attempt(job_id, 1, 101.0, state=JobState.FAILED, exit_code=3)
    assert store.events(job_id) == [(100.0, "created", ""), (101.0, "state", "attempt 1: FAILED")]


def test_unknown_attempt_field_is_refused_and_nothing_changes(store: Store) -> None:
    job_id = create(store)
    with pytest.raises(ValueError, match="unknown attempt fields \\['reason', 'uid'\\]"):
        store.update_attempt(job_id, 1, 101.0, state=JobState.RUNNING, uid=0, reason="x")
    job = store.get_job(job_id)
    assert job is not None and job.state is JobState.SUBMITTING


def test_open_jobs_exclude_final_jobs_but_keep_unknown_ones(store: Store) -> None:
    done, unknown, running = create(store), create(store), create(store)
    store.update_attempt(done, 1, 101.0, state=JobState.COMPLETED)
    store.update_attempt(unknown, 1, 101.0, state=JobState.UNKNOWN)
    store.update_attempt(running, 1, 101.0, state=JobState.RUNNING)
    assert [j.id for j in store.open_jobs()] == [unknown, running]


def test_list_jobs_filters_by_user(store: Store) -> None:
    mine = create(store)
    store.create_job(name="x", uid=2000, user="bob", request={}, nodes=1, jobs_root="/jobs", now=1.0)
    assert [j.id for j in store.list_jobs(uid=1000)] == [mine]
    assert len(store.list_jobs()) == 2


def test_missing_job_is_none(store: Store) -> None:
    assert store.get_job(999) is None


def test_cancel_request_is_stored(store: Store) -> None:
    job_id = create(store)
    store.request_cancel(job_id, 101.0)
    job = store.get_job(job_id)
    assert job is not None and job.cancel_requested


def test_store_id_is_stable_across_reopen(db_path: str) -> None:
    with closing(Store(db_path)) as first:
        store_id = first.store_id
    with closing(Store(db_path)) as second:
        assert second.store_id == store_id
    assert len(store_id) == 12


def test_two_stores_have_different_ids(tmp_path: Path) -> None:
    with closing(Store(str(tmp_path / "a.sqlite"))) as a, closing(Store(str(tmp_path / "b.sqlite"))) as b:
        assert a.store_id != b.store_id


def test_two_stores_sharing_a_jobs_directory_give_their_job_1_different_directories(tmp_path: Path) -> None:
    """Item 2: a second store (another login node, a moved state directory) also numbers from 1."""
    with closing(Store(str(tmp_path / "a.sqlite"))) as a, closing(Store(str(tmp_path / "b.sqlite"))) as b:
        job_a, job_b = a.get_job(create(a)), b.get_job(create(b))
    assert job_a is not None and job_b is not None and job_a.id == job_b.id == 1
    assert job_a.job_dir != job_b.job_dir
    assert job_a.current is not None and job_b.current is not None
    assert job_a.current.log_path != job_b.current.log_path


def test_every_job_gets_its_own_random_submission_nonce(store: Store, db_path: str) -> None:
    first, second = create(store), create(store)
    with closing(Store(db_path)) as reopened:
        nonces = [job.nonce for job in (reopened.get_job(first), reopened.get_job(second)) if job is not None]
    assert len(nonces) == 2 and all(len(n) == 16 for n in nonces) and nonces[0] != nonces[1]


def test_fresh_store_passes_the_integrity_check(store: Store) -> None:
    create(store)
    assert store.integrity_ok()


def test_a_store_from_before_the_elastic_columns_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, uid INTEGER NOT NULL,"
        " user TEXT NOT NULL, state TEXT NOT NULL, request TEXT NOT NULL, created REAL NOT NULL,"
        " job_dir TEXT NOT NULL DEFAULT '', cancel_requested INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE attempts (job_id INTEGER NOT NULL, number INTEGER NOT NULL, reason TEXT NOT NULL,"
        " state TEXT NOT NULL, nodes INTEGER NOT NULL, slurm_job_id INTEGER, node_list TEXT NOT NULL DEFAULT '',"
        " state_reason TEXT NOT NULL DEFAULT '', exit_code INTEGER, submit_time REAL, start_time REAL,"
        " end_time REAL, log_path TEXT NOT NULL DEFAULT '', PRIMARY KEY (job_id, number));"
        "INSERT INTO jobs (name, uid, user, state, request, created, job_dir) VALUES"
        " ('old', 1000, 'u', 'COMPLETED', '{\"nodes\": \"1\"}', 1.0, '/jobs/1');"
        "INSERT INTO attempts (job_id, number, reason, state, nodes, slurm_job_id) VALUES"
        " (1, 1, 'submit', 'COMPLETED', 1, 7);"
    )
    db.commit()
    db.close()
    store = Store(str(path))
    job = store.get_job(1)
    assert job is not None and job.name == "old" and job.current is not None
    assert job.current.restart_count == 0 and job.progress is None and store.integrity_ok()
    assert job.job_dir == "/jobs/1" and job.nonce == ""  # an earlier version's job keeps its directory
    new = store.get_job(create(store))
    assert new is not None and new.job_dir == f"/jobs/{store.store_id}-2" and new.nonce


# --- lists of jobs: all attempts in one query ------------------------------------------------


@pytest.fixture
def filled(store: Store) -> Store:
    """Jobs of two users in every shape: one attempt or several (requeues, grows), open or final."""
    for n in range(12):
        uid = 1000 + n % 2
        job_id = store.create_job(name=f"j{n}", uid=uid, user=f"u{uid}", request=REQUEST_1_3, nodes=1, jobs_root="/jobs",
                              now=float(n))
        for number in range(2, 2 + n % 3):
            store.add_attempt(job_id, number, float(n), reason=AttemptReason.REQUEUE, state=JobState.PENDING,
                          nodes=number, slurm_job_id=500 + 10 * n + number, log_path=f"/jobs/{job_id}/a{number}.log")
        if n % 4 == 0:
            last = 1 + n % 3
            store.update_attempt(job_id, last, float(n), state=JobState.COMPLETED)
    return store


def one_by_one(store: Store, ids: list[int]) -> list[Job | None]:
    return [store.get_job(i) for i in ids]


def query(db_path: str, sql: str) -> list[tuple[int, ...]]:
    """Read the store's file directly, as another process would."""
    with closing(sqlite3.connect(db_path)) as db:
        return db.execute(sql).fetchall()


def test_open_jobs_are_the_jobs_loaded_one_by_one(filled: Store, db_path: str) -> None:
    expected = [i for (i,) in query(db_path, "SELECT id FROM jobs WHERE state != 'COMPLETED' ORDER BY id")]
    assert len(expected) == 9
    assert filled.open_jobs() == one_by_one(filled, expected)


@pytest.mark.parametrize(("uid", "limit"), [(None, 1000), (None, 5), (1000, 1000), (1001, 2), (1002, 10)])
def test_job_lists_are_the_jobs_loaded_one_by_one(filled: Store, db_path: str, uid: int | None, limit: int) -> None:
    mine = "" if uid is None else f"WHERE uid={uid}"
    expected = sorted(i for (i,) in query(db_path, f"SELECT id FROM jobs {mine} ORDER BY id DESC LIMIT {limit}"))
    assert filled.list_jobs(uid, limit=limit) == one_by_one(filled, expected)


def test_every_job_of_a_list_has_exactly_its_own_attempts_in_order(filled: Store, db_path: str) -> None:
    jobs = filled.list_jobs()
    counts = dict(query(db_path, "SELECT job_id, COUNT(*) FROM attempts GROUP BY job_id"))
    assert set(counts.values()) == {1, 2, 3}
    for job in jobs:
        assert [a.job_id for a in job.attempts] == [job.id] * counts[job.id]
        assert [a.number for a in job.attempts] == list(range(1, counts[job.id] + 1))


def test_open_jobs_are_read_while_another_process_holds_a_write_transaction(filled: Store, db_path: str) -> None:
    with closing(sqlite3.connect(db_path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE jobs SET state='CANCELLED'")
        assert len(filled.open_jobs()) == 9  # the committed state, not the writer's
        writer.execute("COMMIT")
    assert filled.open_jobs() == []


def test_a_store_whose_disk_is_full_says_so_naming_it_and_keeps_what_it_had(store: Store, db_path: str) -> None:
    create(store)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    created = 1
    with pytest.raises(StoreWriteError, match=f"the daemon's store {db_path} could not be written .*full"):
        for _ in range(1000):
            store.create_job(name="x" * 4000, uid=1000, user="alice", request=REQUEST, nodes=2, jobs_root="/jobs",
                             now=101.0)
            created += 1
    listed = store.list_jobs()
    assert len(listed) == created and all(len(job.attempts) == 1 for job in listed)  # no half-written job
    store._db.execute(f"PRAGMA max_page_count = {pages * 100}")
    assert create(store) == created + 1 and store.integrity_ok()
