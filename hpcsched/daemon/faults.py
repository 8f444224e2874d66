"""Named fault points, for tests that must kill the daemon at an exact moment (A1, A2).

``HPCSCHED_FAULT=before_sbatch`` makes the daemon SIGKILL itself after the job's intent is
committed and before sbatch runs; ``after_sbatch`` after sbatch returned and before the Slurm id
is recorded; ``rebalance_after_resize`` in a rebalance pass, right after one resize was applied and
before it is recorded or the pass's other decisions are (A7); ``site_after_signal`` in the site
coordinator, right after it signalled a job to shrink and before it saved that (its pass dies
half way). Unset in normal use.
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    if os.environ.get("HPCSCHED_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
