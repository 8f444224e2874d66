"""Choice of Slurm backend.

The Slurm CLI with JSON output works with every Slurm release and is the default. pyslurm is
used only on request (``HPCSCHED_SLURM_BACKEND=pyslurm``) and only where its version matches the
running Slurm's major.minor release: pyslurm builds against one Slurm release only, and the
package index's pyslurm (25.11) matches none of the releases Debian ships (22.05, 24.11, 26.05);
built from its source tag it does (docs/compatibility.md). With pyslurm,
the queue is read through its API; submission, accounting and cancel stay on the CLI.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from hpcsched.slurm.client import SlurmClient
from hpcsched.slurm.parse import SlurmJobRecord
from hpcsched.slurm.states import to_job_state


def pyslurm_matches(slurm_version: tuple[int, int, int], pyslurm_version: str) -> bool:
    """pyslurm's version starts with the Slurm major.minor it was built for (e.g. 25.11.0)."""
    parts = pyslurm_version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) == slurm_version[:2]
    except (IndexError, ValueError):
        return False


def record_from_pyslurm(job: Any) -> SlurmJobRecord:
    """One ``pyslurm.Job`` (its documented properties) as the record the CLI parsers produce."""
    state = to_job_state(str(job.state or ""))
    signal = job.exit_code_signal or 0
    return SlurmJobRecord(
        job_id=int(job.id), name=str(job.name or ""), comment=str(job.comment or ""),
        slurm_state=str(job.state or ""), state=state, reason=str(job.state_reason or ""),
        node_count=int(job.num_nodes or 0), node_list=str(job.allocated_nodes or ""),
        submit_time=float(job.submit_time) if job.submit_time else None,
        start_time=float(job.start_time) if job.start_time and state.value != "PENDING" else None,
        end_time=float(job.end_time) if job.end_time and state.is_final else None,
        exit_code=(128 + signal if signal else job.exit_code) if state.is_final else None,
        restart_count=int(job.requeue_count or 0), user=str(job.user_name or ""),
        uid=None if job.user_id is None else int(job.user_id), partition=str(job.partition or ""),
        priority=int(job.priority or 0),
    )


@dataclass
class PyslurmClient(SlurmClient):
    """Reads the queue through pyslurm; everything else through the CLI."""

    module: Any = None

    def queue(self) -> list[SlurmJobRecord]:
        records = [record_from_pyslurm(job) for job in self.module.Jobs.load().values()]
        if self.only_own_jobs:
            import getpass

            me = getpass.getuser()
            records = [r for r in records if r.user == me]
        return records


def choose_backend(client: SlurmClient, requested: str = "cli") -> tuple[SlurmClient, str]:
    """The client to use and why (shown by ``hpcsched daemon status``)."""
    if requested != "pyslurm":
        return client, "Slurm CLI with JSON output (default)"
    try:
        module = importlib.import_module("pyslurm")
    except ImportError:
        return client, "Slurm CLI: pyslurm was requested but is not installed"
    version = str(getattr(module, "__version__", ""))
    slurm = client.version()
    slurm_text = ".".join(map(str, slurm))
    if not pyslurm_matches(slurm, version):
        return client, f"Slurm CLI: pyslurm {version} does not match Slurm {slurm_text}"
    return (PyslurmClient(runner=client.runner, only_own_jobs=client.only_own_jobs, module=module),
            f"pyslurm {version} (matches Slurm {slurm_text})")
