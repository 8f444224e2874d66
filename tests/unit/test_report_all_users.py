"""``hpcsched report --all-users`` in process: every user's jobs from one ``sacct --allusers``
call, for operators only. The runner answers with recorded sacct output in which one run is made
another user's plain Slurm job (no hpcsched tag in its comment), of a user without a Slurm
association: Slurm 22.05's JSON then names no user, only the job's group (as recorded from the
local cluster for hpcuser2)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from click.testing import CliRunner, Result
from test_report_cli import NOW, SACCT, FakeSlurm

from hpcsched.cli.report import report
from hpcsched.report.gather import Sources
from hpcsched.site.run import slurm_operator
from hpcsched.slurm.runner import CommandResult, SlurmCommandError


def mixed_sacct() -> str:
    """The recorded runs, with Slurm job 63 turned into a plain job of group carol's."""
    doc = json.loads(SACCT)
    for job in doc["jobs"]:
        if job["job_id"] == 63:
            job["user"], job["group"], job["comment"]["job"], job["name"] = None, "carol", None, "job.sh"
    return json.dumps(doc)


def sources(slurm: FakeSlurm, operator: bool) -> Sources:
    def no_daemon(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an all-users report asks no personal daemon")

    return Sources(call=no_daemon, ensure_daemon=no_daemon, runner=slurm, clock=lambda: NOW,
                   whoami=lambda: "hpcuser", is_operator=lambda settings: operator)


def invoke(src: Sources, *args: str) -> Result:
    return CliRunner().invoke(report, ["--all-users", *args], obj=src)


def test_an_operator_gets_every_users_jobs_from_one_sacct_call_of_all_users() -> None:
    slurm = FakeSlurm(stdout=mixed_sacct())
    result = invoke(sources(slurm, operator=True), "--since", "1d", "--format", "json")
    assert result.exit_code == 0, result.output
    (argv, _), = slurm.calls
    assert "--allusers" in argv and not any(a.startswith("--jobs") for a in argv)
    data = json.loads(result.stdout)
    jobs = {(j["user"], j["id"]): j for j in data["jobs"]}
    assert set(jobs) == {("hpcuser", 1), ("hpcuser", 2), ("hpcuser", 4), ("hpcuser", 5), ("group:carol", 63)}
    requeued = jobs[("hpcuser", 4)]
    assert [a["slurm_job_id"] for a in requeued["attempts"]] == [64, 64], "both runs of the requeued job"
    assert requeued["state"] == "COMPLETED" and requeued["accounting"] == "ok" and requeued["node_hours"] > 0
    assert jobs[("group:carol", 63)]["name"] == "job.sh" and jobs[("group:carol", 63)]["state"] == "CANCELLED"
    assert "hpcsched" in requeued["name"] and requeued["work"] is None, "useful work: unknown to an operator"
    users = {u["name"]: u for u in data["users"]}
    assert set(users) == {"hpcuser", "group:carol"} and users["hpcuser"]["jobs"] == 4


def test_all_users_narrowed_to_one_user() -> None:
    result = invoke(sources(FakeSlurm(stdout=mixed_sacct()), operator=True), "--user", "group:carol", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [(j["user"], j["id"]) for j in json.loads(result.stdout)["jobs"]] == [("group:carol", 63)]


def test_an_ordinary_user_asking_for_all_users_is_refused_naming_why_and_slurm_is_not_asked() -> None:
    slurm = FakeSlurm()
    result = invoke(sources(slurm, operator=False))
    assert result.exit_code == 3 and not slurm.calls
    assert "--all-users is for operators" in result.stderr and "hpcuser is not one" in result.stderr


def test_named_jobs_do_not_mix_with_all_users() -> None:
    result = invoke(sources(FakeSlurm(), operator=True), "--job", "4")
    assert result.exit_code == 2 and "--job" in result.stderr


def test_failing_accounting_is_said_and_leaves_an_empty_report() -> None:
    error = SlurmCommandError(["sacct"], 1, "", "sacct: error: Problem talking to the database: Connection refused")
    result = invoke(sources(FakeSlurm(error=error), operator=True), "--format", "json")
    assert result.exit_code == 0, result.output
    assert "Connection refused" in result.stderr
    assert json.loads(result.stdout)["accounting"]["available"] is False


def admin_level(answer: str | None) -> Any:
    def runner(argv: Sequence[str], **kwargs: Any) -> CommandResult:
        if answer is None:
            raise SlurmCommandError(list(argv), 1, "", "sacctmgr: error: no connection")
        return CommandResult(tuple(argv), answer, "")
    return runner


def test_slurms_operator_and_administrator_levels_make_an_operator_and_nothing_else_does() -> None:
    assert slurm_operator("staff", admin_level("Operator\n"))
    assert slurm_operator("root", admin_level("Administrator\n"))
    assert not slurm_operator("hpcuser", admin_level("None\n"))
    assert not slurm_operator("hpcuser", admin_level(None))
