"""Job-level models (pure): step time, statistical efficiency, goodput, learning-rate scaling.

After Pollux (Qiao et al., OSDI 2021) and AdaptDL. Frozen values in, numbers out: nothing here
reads files, runs commands or looks at a clock, so the daemon and the allocator can call it
freely and tests can check it exhaustively. ``docs/models.md`` gives the formulas and priors.
"""

from .efficiency import (
    NO_NOISE_DATA,
    GradientNoise,
    NoiseMeasurement,
    NoiseScaleEstimator,
    adascale_gain,
    noise_from_micro_batches,
    statistical_efficiency,
)
from .goodput import BatchConfig, BatchLimits, best_config, max_goodput, speedup
from .learning_rate import adascale_lr, sqrt_scaled_lr
from .throughput import Observation, ThroughputParams, predict_step_time, predict_throughput
from .throughput_fit import DEFAULT_PRIOR, POLLUX_PRIOR, ThroughputPrior, fit

__all__ = [
    "DEFAULT_PRIOR",
    "NO_NOISE_DATA",
    "POLLUX_PRIOR",
    "BatchConfig",
    "BatchLimits",
    "GradientNoise",
    "NoiseMeasurement",
    "NoiseScaleEstimator",
    "Observation",
    "ThroughputParams",
    "ThroughputPrior",
    "adascale_gain",
    "adascale_lr",
    "best_config",
    "fit",
    "max_goodput",
    "noise_from_micro_batches",
    "predict_step_time",
    "predict_throughput",
    "speedup",
    "sqrt_scaled_lr",
    "statistical_efficiency",
]
