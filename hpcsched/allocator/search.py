"""One allocation plan: admit minimums in priority order, then grow greedily.

Growth is greedy on the marginal objective per GPU. Speedups are not concave in the size (crossing
a node boundary can make a job slower, a restart makes every size but the current one cheaper), so
each job offers its best *jump*: the size above its present one with the largest objective gain
per extra GPU, not just the next GPU. A max-heap holds one offer per job; an offer that no longer
fits is recomputed when it reaches the top. A running job is only offered sizes above its current
one whose priced value beats keeping it, so a grow always pays for its restart.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .candidates import FloatArray, JobTable
from .cluster import Cluster, Limits
from .jobs import ElasticJob
from .placement import NodeLedger


@dataclass
class Plan:
    """The mutable state of one plan: chosen candidate index per job (-1: none) and the packing."""

    index: list[int]
    ledger: NodeLedger
    account_nodes: Counter[str]

    def size(self, job: int, tables: Sequence[JobTable]) -> int:
        return int(tables[job].sizes[self.index[job]]) if self.index[job] >= 0 else 0


@dataclass(frozen=True)
class Problem:
    """Everything a plan is scored against; built once per round."""

    jobs: Sequence[ElasticJob]
    tables: Sequence[JobTable]
    values: Sequence[FloatArray]
    idle: Sequence[float]
    starving: Sequence[bool]
    cluster: Cluster
    limits: Limits
    next_free_s: float  # predicted seconds until the first running job ends (objective.next_departure)
    calm: bool = False  # every job runs and much of the cluster is idle (allocate.calm)

    def objective(self, plan: Plan) -> float:
        return float(sum(self.values[j][i] if i >= 0 else self.idle[j] for j, i in enumerate(plan.index)))

    def current_index(self, job: int) -> int:
        return self.tables[job].index_of(self.jobs[job].current_gpus) if self.jobs[job].current_gpus else -1

    def account_room(self, plan: Plan, job: int) -> float:
        """Nodes the job's account may still add, counting the job's own nodes as free."""
        cap = self.limits.max_nodes_per_account
        if cap is None:
            return float("inf")
        own = int(self.tables[job].nodes[plan.index[job]]) if plan.index[job] >= 0 else 0
        return float(cap - plan.account_nodes[self.jobs[job].account] + own)

    def move(self, plan: Plan, job: int, index: int) -> bool:
        """Put ``job`` at candidate ``index`` (-1: no GPUs) if it fits; True on success."""
        table = self.tables[job]
        nodes = int(table.nodes[index]) if index >= 0 else 0
        if nodes > self.account_room(plan, job):
            return False
        if not plan.ledger.place(job, int(table.sizes[index]) if index >= 0 else 0):
            return False
        account = self.jobs[job].account
        plan.account_nodes[account] += nodes - (int(table.nodes[plan.index[job]]) if plan.index[job] >= 0 else 0)
        plan.index[job] = index
        return True


def empty_plan(problem: Problem) -> Plan:
    ledger = NodeLedger(problem.cluster.free_gpus(), problem.cluster.gpus_per_node)
    return Plan(index=[-1] * len(problem.jobs), ledger=ledger, account_nodes=Counter())


def admit(problem: Problem, plan: Plan, order: Sequence[int], pinned: Sequence[bool]) -> bool:
    """Place each job's minimum (its current size if pinned) in ``order``; False if a pinned job
    no longer fits, which makes the plan invalid. A waiting job that is not starving is left
    waiting where starting now scores below waiting (its start costs more than the delay)."""
    for job in order:
        table = problem.tables[job]
        index = problem.current_index(job) if pinned[job] else 0
        if len(table.sizes) == 0 or index < 0:
            if pinned[job]:
                return False
            continue
        waiting = problem.jobs[job].current_gpus == 0 and not problem.starving[job]
        if waiting and problem.values[job][index] < problem.idle[job]:
            continue  # starting costs more than waiting for GPUs to free up
        if not problem.move(plan, job, index) and pinned[job]:
            return False
    return True


def _best_jump(problem: Problem, plan: Plan, job: int, blocked: set[tuple[int, int]]) -> tuple[float, int] | None:
    """(gain per GPU, candidate index) of the job's best feasible move up, if any gains."""
    table, values, here = problem.tables[job], problem.values[job], plan.index[job]
    above = np.arange(here + 1, len(table.sizes))
    if len(above) == 0:
        return None
    gain = values[above] - values[here]
    current = problem.current_index(job)
    if current >= 0:
        gain = np.where((above > current) & (values[above] <= values[current]), -np.inf, gain)
    room = problem.account_room(plan, job)
    ok = (plan.ledger.placeable(job, table.sizes[above]) > 0) & (table.nodes[above] <= room) & (gain > 0.0)
    ok &= np.array([(job, int(i)) not in blocked for i in above], dtype=bool)
    if not ok.any():
        return None
    ratio = np.where(ok, gain / (table.sizes[above] - table.sizes[here]), -np.inf)
    best = int(np.argmax(ratio))
    return float(ratio[best]), int(above[best])


def grow(problem: Problem, plan: Plan, frozen: Sequence[bool]) -> None:
    """Greedy growth of every admitted, non-frozen job (module docstring)."""
    blocked: set[tuple[int, int]] = set()
    version = [0] * len(problem.jobs)
    heap: list[tuple[float, int, int, int]] = []

    def offer(job: int) -> None:
        version[job] += 1
        jump = _best_jump(problem, plan, job, blocked)
        if jump is not None:
            heapq.heappush(heap, (-jump[0], job, version[job], jump[1]))

    for job, index in enumerate(plan.index):
        if index >= 0 and not frozen[job]:
            offer(job)
    while heap:
        _, job, seen, index = heapq.heappop(heap)
        if seen != version[job]:
            continue
        if not problem.move(plan, job, index):
            blocked.add((job, index))
        offer(job)
