"""Access checks of the daemon's operations (G1), the audit of what an operator does to another
user's job, and reads while the store is busy writing (H5), over a fake Slurm."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from fakeslurm import ALICE, BOB, OPERATOR, Core

from hpcsched.errors import AccessDenied, ValidationError
from hpcsched.jobs.model import JobState


@pytest.fixture
def core(tmp_path: Path) -> Core:
    return Core(tmp_path)


def running(core: Core, **options: Any) -> tuple[int, int]:
    job_id, slurm_id = core.submit(ALICE, **options)
    core.slurm.start(slurm_id)
    core.cycle()
    return job_id, slurm_id


def snapshot(core: Core, job_id: int) -> tuple[Any, ...]:
    """What a user could notice of a job: its record, events, and the Slurm commands run."""
    return core.store.get_job(job_id), core.store.events(job_id), len(core.slurm.calls), core.store.pending_nodes(job_id)


# --- G1: another user's job --------------------------------------------------------------------

DENIED_OPERATIONS = [
    ("cancel", {}),
    ("resize", {"nodes": 1}),
    ("log_path", {}),
    ("log_path", {"attempt": 1}),
    ("status", {}),
    ("events", {}),
]


@pytest.mark.parametrize(("op", "args"), DENIED_OPERATIONS, ids=[f"{op}-{len(a)}" for op, a in DENIED_OPERATIONS])
def test_G1_another_user_cannot_touch_or_see_a_job_and_the_job_is_untouched(core: Core, op: str, args: dict[str, Any]) -> None:
    job_id, _ = running(core, nodes="1-2", start_nodes=2)
    before = snapshot(core, job_id)
    with pytest.raises(AccessDenied, match=f"job {job_id} belongs to another user"):
        core.service.handle(op, {"job": job_id, **args}, BOB)
    assert snapshot(core, job_id) == before


def test_G1_a_users_job_list_leaves_out_other_users_jobs(core: Core) -> None:
    mine, _ = core.submit(BOB)
    running(core)
    assert [j["id"] for j in core.service.op_status({}, BOB)] == [mine]


def test_G1_another_user_cannot_rebalance_or_stop_the_daemon(core: Core) -> None:
    with pytest.raises(AccessDenied, match="owner or an operator"):
        core.service.op_rebalance({}, BOB)
    with pytest.raises(AccessDenied, match="only the daemon's owner may stop it"):
        core.service.op_shutdown({}, BOB)
    assert not core.service.stop.is_set()


def test_G1_the_owner_may_cancel_their_job(core: Core) -> None:
    job_id, slurm_id = running(core)
    assert core.service.op_cancel({"job": job_id}, ALICE)["id"] == job_id
    core.cycle()
    assert core.store.get_job(job_id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert core.slurm.called("scancel", str(slurm_id))


def test_the_owner_sees_what_happened_to_their_job_in_order(core: Core) -> None:
    job_id, slurm_id = running(core, nodes="1-2", start_nodes=2)
    core.service.handle("cancel", {"job": job_id}, ALICE)
    result = core.service.handle("events", {"job": job_id}, ALICE)
    kinds = [e["kind"] for e in result["events"]]
    assert result["job"] == job_id and kinds[0] == "created"
    assert kinds.index("submitted") < kinds.index("cancel_requested")
    assert f"Slurm job {slurm_id}" in result["events"][kinds.index("submitted")]["detail"]
    assert [e["time"] for e in result["events"]] == sorted(e["time"] for e in result["events"])


# --- operators (site mode) ---------------------------------------------------------------------


def test_an_operator_cancelling_another_users_job_is_recorded_with_the_operators_uid(core: Core) -> None:
    job_id, slurm_id = running(core)
    core.service.op_cancel({"job": job_id}, OPERATOR)
    assert ("operator_action", f"by uid {OPERATOR.uid}") in [(k, d) for _, k, d in core.store.events(job_id)]
    assert core.slurm.called("scancel", str(slurm_id))


def test_an_operator_looking_at_a_job_is_not_an_action(core: Core) -> None:
    job_id, _ = running(core)
    assert [j["id"] for j in core.service.op_status({}, OPERATOR)] == [job_id]
    core.service.op_log_path({"job": job_id}, OPERATOR)
    assert "operator_action" not in [k for _, k, _ in core.store.events(job_id)]


@pytest.mark.parametrize("raw", ["x", "1; drop", [1], True, 1.5, 10**30, 1.5e300, -1, 0])
@pytest.mark.parametrize("op", ["cancel", "status", "log_path", "resize", "events"])
def test_a_job_argument_that_is_not_an_id_is_a_validation_error_naming_it(core: Core, op: str, raw: object) -> None:
    """Found by fuzzing the socket: an id beyond SQLite's integers was an internal error."""
    with pytest.raises(ValidationError, match=r"^JOB: "):
        core.service.handle(op, {"job": raw, "nodes": 1}, ALICE)


@pytest.mark.parametrize("raw", [None, "all", -5, 10**30, 2.5])
def test_a_status_limit_that_is_not_a_count_is_a_validation_error_naming_it(core: Core, raw: object) -> None:
    with pytest.raises(ValidationError, match=r"^--limit: "):
        core.service.op_status({"limit": raw}, ALICE)


def test_7_a_request_whose_work_directory_links_out_of_it_is_refused_naming_the_link(core: Core) -> None:
    """The socket is the trust boundary: the daemon walks the work directory as the CLI does."""
    (core.work / "data").symlink_to("/etc")
    with pytest.raises(ValidationError, match=rf"^--workdir: {core.work}/data is a symbolic link to /etc, outside"):
        core.service.op_run({"request": core.request()}, ALICE)
    assert core.store.list_jobs(None) == []
    assert not core.slurm.called("sbatch")


def test_7_the_daemon_leaves_out_its_jobs_directory_when_it_lies_in_the_work_directory(tmp_path: Path) -> None:
    core = Core(tmp_path, jobs_dir=tmp_path / "work" / "jobs")
    (core.work / "jobs" / "s-1").mkdir(parents=True)
    (core.work / "jobs" / "s-1" / "out").symlink_to("/etc")
    job_id, _ = core.submit()
    assert core.store.get_job(job_id) is not None


# --- H5: reads while the store is written ------------------------------------------------------


def test_H5_status_reads_while_another_writer_holds_the_store_see_no_database_locked(core: Core) -> None:
    """Another connection (a backup, an admin's sqlite3 shell, a second daemon process refused
    by the lock but opening the store) holds a write transaction; meanwhile eight readers ask
    for status and the daemon records a cancel. Every reader gets the jobs, the cancel is
    recorded once the writer commits, and no sqlite3.OperationalError reaches anyone."""
    job_id, _ = running(core)
    writer = sqlite3.connect(core.root / "store.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO events (job_id, time, kind) VALUES (NULL, 0, 'held')")
    answers: list[Any] = []
    errors: list[BaseException] = []

    def call(op: str, args: dict[str, Any]) -> None:
        try:
            answers.append(core.service.handle(op, args, ALICE))
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=call, args=("status", {})) for _ in range(8)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()  # the readers finish while the write transaction is still open
    cancel = threading.Thread(target=call, args=("cancel", {"job": job_id}))
    cancel.start()
    writer.execute("COMMIT")
    cancel.join()
    writer.close()
    assert errors == []
    assert [[j["id"] for j in a] for a in answers[:8]] == [[job_id]] * 8
    assert core.store.get_job(job_id).cancel_requested  # type: ignore[union-attr]
