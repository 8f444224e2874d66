"""Values the site-mode unit tests share: queue records, partitions and elastic job views."""

from __future__ import annotations

from hpcsched.allocator import ElasticJob, GoodputModel
from hpcsched.jobs.model import JobState
from hpcsched.models.efficiency import GradientNoise
from hpcsched.models.goodput import BatchLimits
from hpcsched.models.throughput import ThroughputParams
from hpcsched.site.citizen import Partition
from hpcsched.site.decide import Reported
from hpcsched.slurm.parse import SlurmJobRecord

# A job that scales well (small network cost): it gains from every node it is given.
MODEL = GoodputModel(ThroughputParams(0.2, 0.002, 0.01, 0.0005, 0.01, 0.0002, 1.2), GradientNoise(1.0, 1e9),
                     BatchLimits(64, 64 * 16, 64))


def record(job_id: int, uid: int, state: JobState, nodes: int, node_list: str = "", reason: str = "None",
           partition: str = "p", priority: int = 100, submit: float = 0.0) -> SlurmJobRecord:
    return SlurmJobRecord(job_id=job_id, name=f"j{job_id}", comment="", slurm_state=state.value, state=state,
                          reason=reason, node_count=nodes, node_list=node_list, submit_time=submit, start_time=None,
                          end_time=None, exit_code=None, restart_count=0, user=f"u{uid}", uid=uid,
                          partition=partition, priority=priority)


def partition(busy: dict[str, str], count: int, name: str = "p") -> Partition:
    """``count`` nodes n1..nN; ``busy`` overrides states (default idle)."""
    return Partition(name, {f"n{i}": busy.get(f"n{i}", "idle") for i in range(1, count + 1)})


def view(min_nodes: int = 1, max_nodes: int = 8, work: float = 5e6) -> ElasticJob:
    return ElasticJob(key="x", model=MODEL, min_gpus=min_nodes, max_gpus=max_nodes, remaining_work=work,
                      age_s=3600, time_in_state_s=3600)


def reported(slurm_job_id: int, uid: int, min_nodes: int = 1, max_nodes: int = 8, work: float = 5e6) -> Reported:
    return Reported(slurm_job_id, uid, f"u{uid}", slurm_job_id, f"job{slurm_job_id}", view(min_nodes, max_nodes, work))
