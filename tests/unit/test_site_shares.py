"""Fair-share weights from Slurm's association tree (``sshare``): parsing, each user's weight, and
what they do to a coordinator pass (per-account weights, site mode item 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from site_helpers import partition, record, reported
from test_site_coordinator import OP, Clock, FakeSlurm, make

from hpcsched.daemon.service import Caller
from hpcsched.jobs.model import JobState
from hpcsched.site.decide import decide
from hpcsched.site.shares import SharesParseError, parse_sshare, user_weights, weight_of

R = JobState.RUNNING
# sshare -a -P -n -o Account,User,RawShares on a site giving physics three times biology's share
TREE = """root||
 root|root|1
 physics||3
  physics|u1001|1
 biology||1
  biology|u1002|1
  biology|u1003|parent
"""


def test_a_users_weight_is_the_product_of_its_shares_down_the_tree() -> None:
    weights = user_weights(parse_sshare(TREE))
    # root's children: root (1), physics (3), biology (1) -> 1/5, 3/5, 1/5; biology's two users halve it
    assert weights == pytest.approx({"root": 0.2, "u1001": 0.6, "u1002": 0.1, "u1003": 0.1})
    assert weights["u1001"] == pytest.approx(6 * weights["u1002"])


def test_a_user_in_two_accounts_adds_them_up_and_one_unknown_to_slurm_weighs_the_average() -> None:
    weights = user_weights(parse_sshare(TREE + "  biology|u1001|1\n"))
    assert weights["u1001"] == pytest.approx(0.6 + 1 / 15)
    assert weight_of({"a": 0.2, "b": 0.6}, "stranger") == pytest.approx(0.4)
    assert weight_of({}, "anyone") == 1.0


@pytest.mark.parametrize(("text", "words"), [
    ("root|\n", "line 1: expected Account|User|RawShares"),
    ("root||1\n research||lots\n", "line 2: RawShares 'lots' is not a number"),
    ("root||1\n research||-2\n", "line 2: RawShares '-2' is out of range"),
])
def test_a_tree_sshare_did_not_print_is_refused_naming_the_line(text: str, words: str) -> None:
    with pytest.raises(SharesParseError, match=words.replace("|", r"\|").replace("(", r"\(")):
        parse_sshare(text)


def scene(weights: dict[str, float] | None, forged: float = 1.0) -> dict[str, int]:
    """u1001 and u1002 each run one elastic job (1-8 nodes) on 2 nodes, 4 of the 8 idle; the
    pass's targets."""
    queue = [record(1, 1001, R, 2, "n[1-2]"), record(2, 1002, R, 2, "n[3-4]")]
    reports = {r.job_id: reported(r.job_id, r.uid, 1, 8) for r in queue}
    reports[2] = dataclasses.replace(reports[2], view=dataclasses.replace(reports[2].view, weight=forged))
    plan = decide({"p": partition({f"n{i}": "alloc" for i in range(1, 5)}, 8)}, queue, reports, weights=weights)
    return {d.user: d.target for d in plan.decisions}


def test_a_user_with_three_times_the_share_gets_about_three_times_the_nodes() -> None:
    assert scene(None) == {"u1001": 4, "u1002": 4}
    weighted = scene({"u1001": 0.75, "u1002": 0.25})
    assert weighted == {"u1001": 6, "u1002": 2}, weighted
    assert scene({"u1001": 0.75, "u1002": 0.25}, forged=100.0) == weighted, "a weight in a report counts for nothing"


def test_the_coordinator_asks_sshare_once_per_interval_and_goes_on_without_it(tmp_path: Path) -> None:
    slurm, clock = FakeSlurm(shares=TREE), Clock()
    c, _ = make(tmp_path, slurm, clock)
    assert c.user_weights()["u1001"] == pytest.approx(0.6)
    clock.now += 60
    c.user_weights()
    assert slurm.shares_asked == 1, "one sshare per interval, whatever the passes"
    slurm.shares = "down"
    clock.now += c.shares_ttl_s
    assert c.user_weights()["u1001"] == pytest.approx(0.6), "Slurm silent: the last weights stand"
    assert slurm.shares_asked == 2


def test_operators_see_every_users_weight_and_a_user_only_their_own(tmp_path: Path) -> None:
    slurm, clock = FakeSlurm(shares=TREE), Clock()
    c, service = make(tmp_path, slurm, clock)
    c.run_pass()
    everyone = service.handle("status", {"all_users": True}, OP)["weights"]
    assert everyone == pytest.approx({"root": 0.2, "u1001": 0.6, "u1002": 0.1, "u1003": 0.1})
    assert service.handle("status", {}, Caller(1002, "u1002"))["weights"] == pytest.approx({"u1002": 0.1})
