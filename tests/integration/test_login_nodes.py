"""Several login nodes behind one name (issue 14, item 5), played on this machine by two daemons of
one user with the same home, state and jobs directories and different host names (HPCSCHED_HOST):
each has its own socket and store, their job ids and directories never collide, and a command
typed on one login node about the other's job says where to run it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import LOGIN_HOST, UserSession

OTHER_HOST = "login2"
QUICK = "print('done')\n"


@pytest.fixture
def second_login_node(session: UserSession) -> Iterator[dict[str, str]]:
    """The environment of the session's user on a second login node; its daemon is stopped after."""
    env = {"HPCSCHED_HOST": OTHER_HOST}
    yield env
    session.hs("daemon", "stop", check=False, timeout=60, env=env)


def test_two_login_nodes_keep_their_jobs_apart_and_name_each_others(
        session: UserSession, second_login_node: dict[str, str]) -> None:
    script = session.write("quick.py", QUICK)
    first = session.run_job(str(script))
    second = int(json.loads(session.hs("run", "--json", str(script), env=second_login_node).stdout)["id"])
    third = session.run_job(str(script))
    assert len({first, second, third}) == 3  # one numbering for the user, whichever login node
    assert session.daemon_file("sock").exists() and session.daemon_file("sock", OTHER_HOST).exists()

    done = session.wait(first)
    assert done["state"] == "COMPLETED"
    there = json.loads(session.hs("status", str(second), "--json", env=second_login_node).stdout)[0]
    assert there["job_dir"] != done["job_dir"]
    assert OTHER_HOST in there["job_dir"].rsplit("/", 1)[1] and LOGIN_HOST in done["job_dir"].rsplit("/", 1)[1]

    refused = session.hs("status", str(second), check=False)
    assert refused.returncode != 0
    assert f"job {second} belongs to your daemon on login node {OTHER_HOST}; run this command there" \
        in refused.stderr
    refused = session.hs("cancel", str(first), check=False, env=second_login_node)
    assert f"job {first} belongs to your daemon on login node {LOGIN_HOST}" in refused.stderr
    assert session.status(first)["state"] == "COMPLETED"  # untouched by the refused cancel

    listed = session.hs("status", env=second_login_node).stdout
    assert f"jobs {first}, {third} belong to your daemon on login node {LOGIN_HOST}: run `hpcsched status` there" \
        in listed
