"""hpcsched rebalance on the real cluster: explained decisions, one pass at a time (H2), cron."""

from __future__ import annotations

import json
import subprocess

from conftest import CLI, UserSession, copy_example
from test_elastic import DIGITS, running_attempt, wait_for


def test_dry_run_explains_each_elastic_job_and_changes_nothing(session: UserSession) -> None:
    copy_example(session, "digits_cnn.py")
    job = session.run_job("digits_cnn.py", "--nodes", "1-3", "--start-nodes", "1", "--", "--epochs", "30", *DIGITS)
    running_attempt(session, job, 1, nodes=1, min_steps=10)
    result = json.loads(session.hs("rebalance", "--dry-run", "--json").stdout)
    assert result["dry_run"] is True
    (decision,) = [d for d in result["decisions"] if d["job"] == job]
    assert decision["current_nodes"] == 1 and 1 <= decision["target_nodes"] <= 3
    assert decision["reason"] and "gain_s" in decision and "cost_s" in decision and decision["applied"] is False
    assert [a["number"] for a in session.status(job)["attempts"]] == [1], "a dry run changes nothing"
    table = session.hs("rebalance", "--dry-run").stdout
    assert "TARGET" in table and "digits_cnn" in table
    session.hs("cancel", str(job), "--wait")


def concurrent_passes(session: UserSession, *extra: list[str]) -> list[tuple[int, str, str]]:
    """Run one ``hpcsched rebalance --json`` per entry of ``extra`` (its additional options) at once."""
    procs = [subprocess.Popen([CLI, "rebalance", "--json", *options], user=session.user,
                              group=session.user, extra_groups=[], env=session.env, cwd=str(session.workdir),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for options in extra]
    outputs = [p.communicate(timeout=60) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def test_H2_two_concurrent_passes_one_works_one_reports_busy(session: UserSession) -> None:
    session.hs("daemon", "start", env={"HPCSCHED_REBALANCE_HOLD": "3"})
    results = concurrent_passes(session, [], [])
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    busy = next(err for code, _, err in results if code == 1)
    assert "rebalance busy" in busy
    # With --wait (as cron runs it) whichever pass comes second runs after the first instead of failing.
    waited = concurrent_passes(session, ["--wait", "30"], ["--wait", "30"])
    assert [code for code, _, _ in waited] == [0, 0], waited
    assert all(json.loads(out)["dry_run"] is False for _, out, _ in waited)


def test_cron_install_status_remove_manage_one_entry(session: UserSession) -> None:
    """The local cluster runs no cron daemon: install and status say so and exit 1, the entry is kept."""
    installed = session.hs("cron", "install", "--every", "5m", check=False)
    assert "*/5 * * * *" in installed.stdout and "rebalance --quiet" in installed.stdout
    assert installed.returncode == 1 and "no cron daemon runs on this host" in installed.stderr
    session.hs("cron", "install", "--every", "10m", check=False)  # replaces, never duplicates
    crontab = session.as_user(["crontab", "-l"]).stdout
    assert crontab.count("# hpcsched rebalance") == 1 and "*/10 * * * *" in crontab
    status = session.hs("cron", "status", check=False)
    assert status.returncode == 1 and "*/10 * * * *" in status.stdout
    assert "no cron daemon runs on this host, so nothing runs the entry" in status.stderr
    refused = session.hs("cron", "install", "--every", "61m", check=False)
    assert refused.returncode == 2 and "--every" in refused.stderr
    session.hs("cron", "remove")
    assert session.hs("cron", "status", check=False).returncode == 1
    assert "# hpcsched rebalance" not in session.as_user(["crontab", "-l"]).stdout


def test_a_job_waiting_for_nodes_makes_an_elastic_job_shrink(session: UserSession) -> None:
    """All three nodes run one elastic job; a second job asks for one node. The daemon sees it wait
    in the queue and runs an admission pass: the elastic job shrinks to two nodes and the newcomer
    starts on the third, without waiting for a cron pass."""
    copy_example(session, "digits_cnn.py")
    elastic = session.run_job("digits_cnn.py", "--nodes", "1-3", "--start-nodes", "3", "--", "--epochs", "400", *DIGITS)
    running_attempt(session, elastic, 1, nodes=3, min_steps=10)
    newcomer = session.run_job("digits_cnn.py", "--nodes", "1", "--name", "newcomer", "--", "--epochs", "1", *DIGITS)
    started = session.wait(newcomer, {"RUNNING", "COMPLETED"}, timeout=180)
    assert started["state"] in ("RUNNING", "COMPLETED")
    attempts = session.status(elastic)["attempts"]
    assert [a["nodes"] for a in attempts][:2] == [3, 2], attempts
    assert session.wait(newcomer, timeout=240)["state"] == "COMPLETED"
    wait_for(lambda: session.status(elastic)["attempts"][-1]["state"] == "RUNNING", 180, "the elastic job on 2 nodes")
    session.hs("cancel", str(elastic), "--wait")
