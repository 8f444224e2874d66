"""Runtime library used inside training jobs: what makes a DDP script resizable by hpcsched.

It runs inside the training container (copied there as /opt/hpcsched/hpcsched/runtime), so it
imports only the standard library, torch, optionally numpy, and (for adaptive jobs) the pure
``hpcsched.models`` with numpy and scipy — never the daemon or the CLI.

- :class:`ElasticTrainer` — the API a script uses (``trainer.py``);
- :class:`AdaptiveBatch` — opt-in goodput-driven batch size, accumulation and learning rate
  (``adaptive.py``; it uses the pure models of ``hpcsched.models``, copied into the image too);
- :class:`CheckpointStore` — committed, checksummed checkpoint directories (``checkpoint.py``);
- :class:`ElasticBatchSampler` — every sample once per epoch across resizes (``sampler.py``);
- :class:`StopRequest` and :func:`agree` — SIGUSR1/SIGTERM/stop file and the agreed stop step
  (``stop.py``);
- :class:`ProgressLog` — the progress.jsonl lines the daemon reads (``progress.py``).
"""

from hpcsched.runtime.adaptive import AdaptiveBatch
from hpcsched.runtime.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointInvalid,
    CheckpointNotSaved,
    CheckpointStore,
)
from hpcsched.runtime.environment import JobEnvironment, Topology, job_from_env, topology_from_env
from hpcsched.runtime.progress import ProgressLog
from hpcsched.runtime.sampler import ElasticBatchSampler
from hpcsched.runtime.snapshot import DataPosition
from hpcsched.runtime.stop import StopReason, StopRequest, agree
from hpcsched.runtime.trainer import EXIT_CHECKPOINTED, EXIT_NOT_CHECKPOINTED, ElasticTrainer

__all__ = [
    "EXIT_CHECKPOINTED",
    "EXIT_NOT_CHECKPOINTED",
    "AdaptiveBatch",
    "Checkpoint",
    "CheckpointError",
    "CheckpointInvalid",
    "CheckpointNotSaved",
    "CheckpointStore",
    "DataPosition",
    "ElasticBatchSampler",
    "ElasticTrainer",
    "JobEnvironment",
    "ProgressLog",
    "StopReason",
    "StopRequest",
    "Topology",
    "agree",
    "job_from_env",
    "topology_from_env",
]
