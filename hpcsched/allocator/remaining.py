"""How much work a job has left, estimated from what its runtime reports (pure).

The allocator weights jobs by their remaining time and prices restarts over it
(``remaining_work / goodput``), but no scheduler knows a job's remaining work: a job may stop
at a target accuracy before its last epoch, and a script need not say how long it trains. What
hpcsched's runtime does report is the work done so far and, when the script declares its epochs
(``trainer.epochs(n)``) or its ``total_steps``, the total it plans. From those:

* **declared**: ``planned - done``. The plan is an upper bound: a job that stops at its target
  early finishes sooner than predicted, one that runs its plan out exactly on time. A job still
  running past its plan proves the declaration wrong; what lies beyond it is estimated as an
  undeclared job's (below) from the work done past the plan, at least ``prior``: never as
  finished, which would make it weightless and the first to shrink.
* **undeclared**: least attained service, as Tiresias ranks jobs it knows nothing about:
  training times are heavy-tailed, so a job that has run long is likely to run long still, and
  it is assumed to need as much again as it has done, and at least ``prior``, so that a job just
  started is neither taken for finished nor for endless.

Work is in the goodput's unit, samples at the job's initial batch size ``M0`` (for a fixed-batch
job, the samples it has processed). The daemon's rebalance and the simulator call the same
function; neither hands the allocator anything a running job has not reported.
"""

from __future__ import annotations

import math

from .candidates import goodput_at
from .jobs import GoodputModel

# A job that declares nothing is assumed to need at least half an hour on its minimum size.
UNDECLARED_PRIOR_S = 1800.0


def estimate_remaining_work(done: float, planned: float | None = None, *, prior: float = 0.0) -> float:
    """Remaining work of a job that has done ``done`` of a declared total ``planned`` (``None``:
    nothing declared, then ``max(done, prior)``; past the plan ``max(done - planned, prior)``);
    see the module docstring."""
    if not (math.isfinite(done) and math.isfinite(prior)) or done < 0.0 or prior < 0.0:
        raise ValueError(f"need finite, non-negative work done and prior: done={done}, prior={prior}")
    if planned is None:
        return max(done, prior)
    if not math.isfinite(planned) or planned < 0.0:
        raise ValueError(f"a declared total must be finite and non-negative: {planned}")
    if done > planned:
        return max(done - planned, prior)
    return planned - done


def undeclared_prior(model: GoodputModel, min_gpus: int, gpus_per_node: int, seconds: float = UNDECLARED_PRIOR_S) -> float:
    """The ``prior`` for a job that declares nothing: the work it does in ``seconds`` on its
    minimum size, by its own goodput model."""
    return seconds * goodput_at(model, gpus_per_node, min_gpus)
