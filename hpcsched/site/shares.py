"""Per-user weights from Slurm's fair-share tree (pure): how the site allocator splits the elastic
jobs' capacity between users when the site gives its accounts different shares.

``sshare -a -P -n -o Account,User,RawShares`` prints the association tree depth first, an
account's depth as leading spaces in its name, a user's association one level below its account.
A node's share among its siblings is ``RawShares / sum of the siblings' RawShares`` (``parent``
or an empty value counts as 1), and a user's weight is the product of the shares on the path from
the root: with accounts ``physics`` (3) and ``biology`` (1), one user in each, the physics user
weighs 3/4 and the biology user 1/4. A user with several associations adds them up. The allocator
splits the capacity between the users *with runnable jobs* in proportion to their weights
(:func:`hpcsched.allocator.allocate.fair_shares`), which is Slurm's hierarchical split whenever a
account's users are all active, and gives an idle user's part to everyone else otherwise.

A user Slurm has no association for (a site without enforced associations) weighs as much as the
average user who has one; without a tree every user weighs 1, as before weights existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hpcsched.errors import HpcschedError


class SharesParseError(HpcschedError):
    pass


@dataclass(frozen=True)
class Association:
    depth: int
    account: str
    user: str  # "" for an account
    raw: float


def parse_sshare(text: str) -> list[Association]:
    """Rows of ``sshare -a -P -n -o Account,User,RawShares``; a line that is not three fields, or a
    share that is neither a number, ``parent`` nor empty, is refused naming the line."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 3:
            raise SharesParseError(f"sshare line {number}: expected Account|User|RawShares, got {line!r}")
        account, user, raw = fields
        rows.append(Association(len(account) - len(account.lstrip(" ")), account.strip(), user.strip(), _raw(raw, number)))
    return rows


def _raw(text: str, number: int) -> float:
    text = text.strip()
    if text in ("", "parent"):
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise SharesParseError(f"sshare line {number}: RawShares {text!r} is not a number") from None
    if not value >= 0.0 or value == float("inf"):
        raise SharesParseError(f"sshare line {number}: RawShares {text!r} is out of range")
    return value


def user_weights(rows: Iterable[Association]) -> dict[str, float]:
    """Each user's weight: the product of its shares among siblings from the root down."""
    rows = list(rows)
    parents: list[int | None] = []
    path: list[int] = []  # the open node at each depth
    for index, row in enumerate(rows):
        del path[row.depth:]
        parents.append(path[-1] if path else None)
        path.append(index)
    siblings: dict[int | None, float] = {}
    for row, parent in zip(rows, parents, strict=True):
        siblings[parent] = siblings.get(parent, 0.0) + row.raw
    share = [row.raw / siblings[parent] if siblings[parent] > 0 else 0.0 for row, parent in zip(rows, parents, strict=True)]
    weights: dict[str, float] = {}
    for index, row in enumerate(rows):
        if not row.user:
            continue
        weight, at = share[index], parents[index]
        while at is not None:
            weight *= share[at]
            at = parents[at]
        weights[row.user] = weights.get(row.user, 0.0) + weight
    return {user: w for user, w in weights.items() if w > 0.0}


def weight_of(weights: Mapping[str, float], user: str) -> float:
    """``user``'s weight; one Slurm has no association for weighs as much as the average user."""
    if user in weights:
        return weights[user]
    return sum(weights.values()) / len(weights) if weights else 1.0
