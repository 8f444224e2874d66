"""``hpcsched logs`` of an attempt without a log file says why on stderr, instead of nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcsched.cli.follow import no_log_note, print_log


def answer(state: str, final: bool) -> dict[str, object]:
    return {"job": 3, "attempt": 1, "path": "/jobs/s-3/attempt-1.log", "state": state, "final": final}


def test_a_waiting_job_has_no_output_yet_and_says_where_it_will_be() -> None:
    note = no_log_note(answer("PENDING", False))
    assert note == ("hpcsched: job 3 attempt 1 has no output yet (the job is PENDING); "
                    "it will be in /jobs/s-3/attempt-1.log")


def test_an_ended_job_without_output_points_at_the_jobs_directory() -> None:
    note = no_log_note(answer("FAILED", True))
    assert "left no output at /jobs/s-3/attempt-1.log (the job is FAILED)" in note and "hpcsched doctor" in note


def test_print_log_copies_the_file_and_tells_a_missing_one(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    log = tmp_path / "attempt-1.log"
    log.write_bytes(b"rank 0 ready\n")
    assert print_log(str(log)) and capsysbinary.readouterr().out == b"rank 0 ready\n"
    assert not print_log(str(tmp_path / "none.log")) and capsysbinary.readouterr().out == b""

