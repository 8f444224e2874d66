"""Per-account fair-share weights on the real cluster (issue: site mode, item 2): the site gives
account ``hs_physics`` three times the share of ``hs_biology``; Slurm's own ``sshare`` output
becomes user weights 3:1, and the coordinator, running under its service account, shows them to
an operator."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from test_report_operators import as_operator
from test_site import coordinator, coordinator_ctl  # noqa: F401  (coordinator: a fixture)

from hpcsched.site.shares import parse_sshare, user_weights
from hpcsched.slurm.client import SlurmClient

PHYSICS, BIOLOGY = ("hs_physics", "hpcuser2", 3), ("hs_biology", "hpcuser3", 1)


def sacctmgr(*args: str) -> None:
    subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True, timeout=60)


def remove_accounts() -> None:
    for account, user, _ in (PHYSICS, BIOLOGY):
        sacctmgr("delete", "user", user, f"account={account}")
        sacctmgr("delete", "account", account)


@pytest.fixture
def accounts(cluster: None) -> Iterator[None]:
    remove_accounts()  # what a run that was killed may have left
    for account, user, shares in (PHYSICS, BIOLOGY):
        sacctmgr("add", "account", account, "cluster=hpclocal", f"fairshare={shares}")
        sacctmgr("add", "user", user, f"account={account}", "cluster=hpclocal")
    yield
    remove_accounts()


def test_slurms_shares_become_user_weights_three_to_one(accounts: None) -> None:
    weights = user_weights(parse_sshare(SlurmClient().fair_share_tree()))
    assert weights["hpcuser2"] == pytest.approx(3 * weights["hpcuser3"]), weights


def test_the_coordinator_shows_an_operator_the_weights_it_sizes_with(accounts: None, coordinator: str) -> None:  # noqa: F811
    coordinator_ctl("restart")  # it asks sshare at its first pass, then every five minutes
    deadline, weights = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        out = as_operator("site", "status", "--all-users", "--json")
        assert out.returncode == 0, out.stderr
        weights = json.loads(out.stdout).get("weights") or {}
        if "hpcuser2" in weights:
            break
        time.sleep(1)
    assert weights["hpcuser2"] == pytest.approx(3 * weights["hpcuser3"], rel=1e-3), weights
