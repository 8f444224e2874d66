"""Job-level adaptation (pure): the batch configuration an adaptive job runs at next.

An adaptive job starts exactly as its fixed-batch twin would (the global batch ``M0`` its
learning rate was tuned for) and departs from it only on the models' word:

1. no step times yet: the initial configuration, the smallest global batch >= ``M0``;
2. step times at one local batch only, but a noise measurement: one exploration step at twice
   the local batch, since one batch size cannot tell fixed per-step costs from per-sample costs
   and the prior assumes little gain (a larger batch that the noise scale says is wasteful is
   not worth exploring: see :func:`choose`);
3. otherwise the configuration of highest predicted goodput (:func:`~.goodput.best_config`),
   kept unless it beats the current one by ``switch_gain`` (a switch restarts the data loader,
   and a predicted gain below the models' own error is no gain: see :data:`SWITCH_GAIN`).

The learning rate follows the global batch by ``lr_rule``: ``"sqrt"`` (adaptive optimisers),
``"adascale"`` (SGD; needs the noise scale) or ``"none"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .efficiency import NO_NOISE_DATA, GradientNoise, adascale_gain, statistical_efficiency
from .goodput import BatchLimits, best_config
from .throughput import Observation, ThroughputParams, predict_step_time
from .throughput_fit import ThroughputPrior, fit

LR_RULES = ("sqrt", "adascale", "none")
# A switch must be predicted to gain 20%: the step-time fit is off by about 8% leaving a
# configuration out (docs/models.md) and the smoothed noise estimate moves by as much, so smaller
# predicted gains are mostly the models' error. At 5% the choice flapped between the smallest
# and the largest batch on every re-choice (docs/adaptive.md, "Limitations").
SWITCH_GAIN = 1.2


@dataclass(frozen=True)
class AdaptChoice:
    """A batch configuration and why: ``reason`` is initial, explore, goodput or keep."""

    local_bsz: int
    accum_steps: int
    global_bsz: int
    lr_factor: float
    efficiency: float
    reason: str
    predicted_step_time: float | None = None


def lr_factor(rule: str, noise: GradientNoise, global_bsz: int, base_bsz: int) -> float:
    """The multiplier of the learning rate at ``global_bsz`` (1 at ``base_bsz``)."""
    if rule == "sqrt":
        return float((global_bsz / base_bsz) ** 0.5)
    if rule == "adascale":
        return float(adascale_gain(noise, global_bsz, base_bsz)) if noise != NO_NOISE_DATA else 1.0
    if rule == "none":
        return 1.0
    raise ValueError(f"unknown learning-rate rule {rule!r}; use one of {', '.join(LR_RULES)}")


def initial_config(num_replicas: int, limits: BatchLimits) -> tuple[int, int]:
    """(local batch, accumulation steps) of the smallest global batch >= ``M0`` within the limits."""
    base = limits.min_global_bsz
    for accum in range(limits.max_accum_steps + 1):
        local = -(-base // (num_replicas * (accum + 1)))
        if local <= limits.max_local_bsz and num_replicas * local * (accum + 1) <= limits.max_global_bsz:
            return local, accum
    raise ValueError(f"no batch configuration of {num_replicas} replicas fits {limits}")


def _choice(
    local: int, accum: int, replicas: int, limits: BatchLimits, noise: GradientNoise, rule: str, reason: str,
    step_time: float | None, form: str,
) -> AdaptChoice:  # fmt: skip
    global_bsz = replicas * local * (accum + 1)
    base = limits.min_global_bsz
    return AdaptChoice(
        local_bsz=local,
        accum_steps=accum,
        global_bsz=global_bsz,
        lr_factor=lr_factor(rule, noise, global_bsz, base),
        efficiency=float(statistical_efficiency(noise, global_bsz, base, form)),
        reason=reason,
        predicted_step_time=step_time,
    )


def _goodput(params: ThroughputParams, noise: GradientNoise, nodes: int, replicas: int, local: int, accum: int,
             base: int, form: str) -> tuple[float, float]:  # fmt: skip
    step_time = float(predict_step_time(params, nodes, replicas, local, accum))
    batch = replicas * local * (accum + 1)
    return batch / step_time * float(statistical_efficiency(noise, batch, base, form)), step_time


def choose(
    observations: Sequence[Observation],
    noise: GradientNoise,
    *,
    num_nodes: int,
    num_replicas: int,
    limits: BatchLimits,
    lr_rule: str = "sqrt",
    current: tuple[int, int] | None = None,
    prior: ThroughputPrior | None = None,
    switch_gain: float = SWITCH_GAIN,
    efficiency: str = "sgd",
) -> AdaptChoice:
    """The configuration to run next on ``num_replicas`` replicas over ``num_nodes`` nodes.

    ``observations`` are the job's measured step times (any sizes; the fit predicts the others),
    ``noise`` its smoothed gradient noise, ``current`` the (local batch, accumulation) it runs
    at now, if any; ``efficiency`` the form of statistical efficiency
    (:func:`~.efficiency.statistical_efficiency`). Raises ``ValueError`` for an unknown
    ``lr_rule`` or ``efficiency``, or limits nothing fits.
    """
    lr_factor(lr_rule, noise, limits.min_global_bsz, limits.min_global_bsz)  # validates the rule early
    statistical_efficiency(noise, limits.min_global_bsz, limits.min_global_bsz, efficiency)  # and the form
    local, accum = initial_config(num_replicas, limits)
    if not observations:
        return _choice(local, accum, num_replicas, limits, noise, lr_rule, "initial", None, efficiency)
    params = fit(observations, prior)
    base = limits.min_global_bsz
    if noise != NO_NOISE_DATA and len({o.local_bsz for o in observations}) < 2:
        explore = min(2 * max(o.local_bsz for o in observations), limits.max_local_bsz,
                      limits.max_global_bsz // (num_replicas * (accum + 1)))  # fmt: skip
        # Worth a look only if the noise allows the larger batch to pay at all: at efficiency e
        # the larger batch needs more than 1/e times the throughput, at most its size ratio.
        ratio = num_replicas * explore * (accum + 1) / base
        worth = float(statistical_efficiency(noise, num_replicas * explore * (accum + 1), base, efficiency))
        if explore > local and worth * ratio > switch_gain:
            step_time = float(predict_step_time(params, num_nodes, num_replicas, explore, accum))
            return _choice(explore, accum, num_replicas, limits, noise, lr_rule, "explore", step_time, efficiency)
    best = best_config(params, noise, num_nodes, num_replicas, limits, efficiency)
    best_goodput, best_time = _goodput(params, noise, num_nodes, num_replicas, best.local_bsz, best.accum_steps, base,
                                       efficiency)  # fmt: skip
    if current is not None and current != (best.local_bsz, best.accum_steps):
        cur_local, cur_accum = current
        fits = cur_local <= limits.max_local_bsz and cur_accum <= limits.max_accum_steps
        batch = num_replicas * cur_local * (cur_accum + 1)
        if fits and limits.min_global_bsz <= batch <= limits.max_global_bsz:
            cur_goodput, cur_time = _goodput(params, noise, num_nodes, num_replicas, cur_local, cur_accum, base, efficiency)
            if best_goodput < switch_gain * cur_goodput:
                return _choice(cur_local, cur_accum, num_replicas, limits, noise, lr_rule, "keep", cur_time, efficiency)
    return _choice(best.local_bsz, best.accum_steps, num_replicas, limits, noise, lr_rule, "goodput", best_time, efficiency)
