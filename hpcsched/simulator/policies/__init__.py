"""The policies the simulator compares; :func:`make_policy` builds a fresh one per run."""

from __future__ import annotations

from collections.abc import Callable

from .base import Policy
from .elastic import ElasticPolicy, hpcsched_nostop_policy, hpcsched_policy, pollux_policy
from .pollux import PolluxPolicy
from .site import SitePolicy
from .slurm_backfill import SlurmBackfillPolicy
from .static import StaticPolicy
from .tiresias import TiresiasPolicy

FACTORIES: dict[str, Callable[[], Policy]] = {
    "static": lambda: StaticPolicy(realistic=False),
    "static-realistic": lambda: StaticPolicy(realistic=True),
    "slurm-backfill": SlurmBackfillPolicy,
    "tiresias": TiresiasPolicy,
    "pollux": pollux_policy,
    "pollux-faithful": PolluxPolicy,
    "hpcsched": hpcsched_policy,
    "pollux-oracle": lambda: pollux_policy(oracle=True),
    "hpcsched-oracle": lambda: hpcsched_policy(oracle=True),
    "hpcsched-nostop": hpcsched_nostop_policy,
    "site": SitePolicy,
    "site-oracle": lambda: SitePolicy(oracle=True),
}
#: The policies ``hpcsched simulate`` compares by default: the same information for all (the
#: ``-oracle`` ones are upper bounds, told the truth); ``site`` needs rigid jobs and users
#: (:func:`hpcsched.simulator.owners.assign_owners`) to differ from ``hpcsched``; ``hpcsched-nostop``
#: (hpcsched as the daemon acts, never stopping a running job) is a labelled variant.
POLICY_NAMES = tuple(name for name in FACTORIES
                     if not name.startswith("site") and not name.endswith(("-oracle", "-nostop")))


def make_policy(name: str) -> Policy:
    try:
        return FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (choose from {', '.join(FACTORIES)})") from None


__all__ = [
    "POLICY_NAMES",
    "ElasticPolicy",
    "Policy",
    "PolluxPolicy",
    "SitePolicy",
    "SlurmBackfillPolicy",
    "StaticPolicy",
    "TiresiasPolicy",
    "make_policy",
]
