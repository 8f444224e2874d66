"""Learning rate for a batch size other than the one the job was tuned for.

When the job-level scheduler changes the global batch from ``M0`` to ``M``, the learning rate
must follow, or the larger batch only averages noise away without moving faster. Two rules:

* square-root scaling, ``lr = lr0 * sqrt(M / M0)``: keeps the variance of each update roughly
  constant; the usual choice for adaptive optimisers (Adam, LAMB) and needs no measurements;
* AdaScale (Johnson et al., 2020), ``lr = lr0 * r`` with the gain ``r`` of
  :func:`hpcsched.models.efficiency.adascale_gain`: linear scaling while the gradient is
  noise-dominated, no scaling when it is not. Training progress is then counted in
  ``M0``-steps (each step adds ``r``), so a learning-rate schedule written for ``M0`` still
  applies. It is the rule Pollux/AdaptDL use with SGD.
"""

from __future__ import annotations

import math

from .efficiency import GradientNoise, adascale_gain


def _check(base_lr: float, batch_size: float, base_bsz: float) -> None:
    if base_lr < 0.0 or batch_size <= 0.0 or base_bsz <= 0.0:
        raise ValueError("need base_lr >= 0 and positive batch sizes")


def sqrt_scaled_lr(base_lr: float, batch_size: float, base_bsz: float) -> float:
    """``base_lr * sqrt(batch_size / base_bsz)``."""
    _check(base_lr, batch_size, base_bsz)
    return base_lr * math.sqrt(batch_size / base_bsz)


def adascale_lr(base_lr: float, noise: GradientNoise, batch_size: float, base_bsz: float) -> float:
    """``base_lr * r``; without noise measurements ``r = 1`` (the learning rate stays put)."""
    _check(base_lr, batch_size, base_bsz)
    return base_lr * float(adascale_gain(noise, batch_size, base_bsz))
