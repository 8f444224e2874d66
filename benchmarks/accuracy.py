"""Held-out accuracy of the step-time model, shared by the accuracy benchmarks (pure).

Configurations are keyed by whatever identifies them in a benchmark; each split fits
:func:`hpcsched.models.fit` on some observations and predicts the others. Error = predicted /
measured - 1 (positive: the model is too slow); MAPE = mean |error| over the predicted ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

from hpcsched.models import Observation, fit, predict_step_time

K = TypeVar("K", bound=Hashable)


def fit_and_predict(train: Sequence[Observation], test: Mapping[K, Observation]) -> dict[K, float]:
    """The step times of ``test`` as the model fitted on ``train`` predicts them."""
    params = fit(train)
    return {k: float(predict_step_time(params, o.num_nodes, o.num_replicas, o.local_bsz, o.accum_steps)) for k, o in test.items()}


def leave_one_out(measured: Mapping[K, Observation]) -> dict[K, float]:
    """Each configuration predicted by a fit on all the others."""
    out: dict[K, float] = {}
    for k, o in measured.items() if len(measured) > 1 else ():
        out |= fit_and_predict([other for j, other in measured.items() if j != k], {k: o})
    return out


def fit_on(measured: Mapping[K, Observation], train: Callable[[K], bool]) -> dict[K, float]:
    """The configurations ``train`` rejects, predicted by a fit on those it accepts."""
    fitted = [o for k, o in measured.items() if train(k)]
    return fit_and_predict(fitted, {k: o for k, o in measured.items() if not train(k)}) if fitted else {}


def in_sample(measured: Mapping[K, Observation]) -> dict[K, float]:
    """Fit and test on all: the floor the model's form allows on this data."""
    return fit_and_predict(list(measured.values()), measured)


def errors(predictions: Mapping[K, float], measured: Mapping[K, Observation]) -> dict[K, float]:
    return {k: p / measured[k].step_time - 1.0 for k, p in predictions.items()}


def mape(predictions: Mapping[K, float], measured: Mapping[K, Observation]) -> float | None:
    values = [abs(e) for e in errors(predictions, measured).values()]
    return statistics.mean(values) if values else None
