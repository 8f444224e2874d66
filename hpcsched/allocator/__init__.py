"""Cluster-level allocation (pure): how many GPUs each elastic job gets this round.

Inputs are frozen values: the :class:`Cluster` (nodes, GPUs per node, what is down or used by
others), the :class:`Limits` of the partition/account, and per job an :class:`ElasticJob` (its
goodput model, size range, current size, age, remaining work and :class:`RestartCost`). Output is
an :class:`Allocation`: per job a target size, its node placement, predicted gain and cost, and a
reason. The objective is Pollux's generalised mean of speedups over the fair share, with restarts
priced over each job's remaining run (``docs/allocator.md``). No files, commands or clocks.
:func:`estimate_remaining_work` turns what a job reports (work done, the total it declared) into
the ``remaining_work`` the allocator takes.
"""

from .admission import admission, admission_pays, admission_shrinks
from .allocate import allocate
from .cluster import Cluster, Limits
from .decisions import Allocation, Decision
from .jobs import ElasticJob, GoodputModel, RestartCost
from .policy import HPCSCHED, POLLUX, AllocatorPolicy, RestartPricing
from .remaining import UNDECLARED_PRIOR_S, estimate_remaining_work, undeclared_prior

__all__ = [
    "HPCSCHED",
    "POLLUX",
    "UNDECLARED_PRIOR_S",
    "Allocation",
    "AllocatorPolicy",
    "Cluster",
    "Decision",
    "ElasticJob",
    "GoodputModel",
    "Limits",
    "RestartCost",
    "RestartPricing",
    "admission",
    "admission_pays",
    "admission_shrinks",
    "allocate",
    "estimate_remaining_work",
    "undeclared_prior",
]
