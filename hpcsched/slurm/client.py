"""High-level Slurm operations over the command runner: submit, queue, accounting, cancel.

Every call goes through :func:`hpcsched.slurm.runner.run_slurm` (or an injected runner with the
same signature, which is how tests inject faults). Queue and accounting are batched: one
``squeue`` and at most one ``sacct`` per monitor cycle, whatever the number of jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hpcsched.slurm import parse
from hpcsched.slurm.parse import NodeRecord, PartitionRecord, SlurmJobRecord
from hpcsched.slurm.runner import Runner, SlurmCommandError, run_slurm

log = logging.getLogger(__name__)
PARTITIONS_CACHE_S = 30.0
Partitions = tuple[list[PartitionRecord], list[NodeRecord]]
# Every state: 22.05 prints finished jobs (within MinJobAge) in ``squeue --json`` whatever the
# filters; from 23.02 the JSON obeys squeue's default filter, which hides them.
QUEUE_ARGV = ("squeue", "--json", "--states=all")


def slurm_timestamp(epoch: float) -> str:
    """sacct's --starttime/--endtime take local time as YYYY-MM-DDTHH:MM:SS."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))


@dataclass
class SlurmClient:
    runner: Runner = field(default=run_slurm)
    only_own_jobs: bool = True
    clock: Callable[[], float] = field(default=time.monotonic)
    _partitions: tuple[float, Partitions] | None = field(default=None, init=False, repr=False)

    def version(self) -> tuple[int, int, int]:
        return parse.parse_version(self.runner(["sinfo", "--version"]).stdout)

    def submit(self, argv: Iterable[str]) -> int:
        """Run the plan's sbatch argv; return the Slurm job id."""
        return parse.parse_sbatch_parsable(self.runner(list(argv), timeout=60.0).stdout)

    def queue(self) -> list[SlurmJobRecord]:
        argv = list(QUEUE_ARGV)
        if self.only_own_jobs:
            argv.append("--me")
        return parse.parse_squeue(self.runner(argv).stdout)

    def queue_all(self) -> list[SlurmJobRecord]:
        """Every user's jobs (one ``squeue --json``): what a sizing pass must not make wait longer."""
        return parse.parse_squeue(self.runner(list(QUEUE_ARGV)).stdout)

    def accounting(self, since: float, job_ids: Iterable[int] | None = None, until: float | None = None) -> list[SlurmJobRecord]:
        """Every run (``-D``: requeued runs too) of jobs since ``since``; one sacct call."""
        argv = ["sacct", "--json", "-D", f"--starttime={slurm_timestamp(since)}"]
        if until is not None:
            argv.append(f"--endtime={slurm_timestamp(until)}")
        else:
            argv.append("--endtime=now")
        ids = sorted(set(job_ids)) if job_ids is not None else []
        if ids:
            argv.append("--jobs=" + ",".join(str(i) for i in ids))
        if not self.only_own_jobs:
            argv.append("--allusers")
        return parse.parse_sacct(self.runner(argv, timeout=60.0).stdout)

    def partitions(self) -> Partitions | None:
        """The partitions (hidden ones too) and their nodes, cached for ``PARTITIONS_CACHE_S``;
        None when Slurm does not tell (then Slurm alone judges a submission)."""
        now = self.clock()
        if self._partitions is None or now - self._partitions[0] > PARTITIONS_CACHE_S:
            try:
                partitions = parse.parse_partitions(self.runner(["scontrol", "-a", "-o", "show", "partition"]).stdout)
                nodes = parse.parse_sinfo_nodes(self.runner(["sinfo", "--json"]).stdout)
            except (SlurmCommandError, parse.SlurmParseError) as e:
                log.warning("partition limits unknown: %s", e)
                return None
            self._partitions = (now, (partitions, nodes))
        return self._partitions[1]

    def node_states(self) -> dict[str, str]:
        """Every node's compact state (``sinfo -N``), a node in several partitions once."""
        return parse.parse_node_states(self.runner(["sinfo", "-h", "-N", "-o", "%N %t"]).stdout)

    def node_partitions(self) -> list[tuple[str, str, str]]:
        """(node, partition, compact state) for every node of every partition (one ``sinfo``)."""
        return parse.parse_node_partitions(self.runner(["sinfo", "-h", "-N", "-o", "%N %P %t"]).stdout)

    def pending_jobs(self) -> int:
        """Jobs of all users waiting in the queue (for the expected queue wait of a grow)."""
        return len(self.runner(["squeue", "-h", "-t", "PD", "-o", "%i"]).stdout.split())

    def idle_nodes(self, partitions: str = "") -> int:
        """Nodes that could start a job now (``sinfo``; one call): of the given partitions (Slurm's
        comma list, as the job asked for them) or, with none, of every partition."""
        argv = ["sinfo", "-h", "-N", "-o", "%N %t"] + (["-p", partitions] if partitions else [])
        return parse.parse_idle_nodes(self.runner(argv).stdout)

    def fair_share_tree(self) -> str:
        """Slurm's association tree with each node's configured shares (one ``sshare``), as text:
        ``Account|User|RawShares`` lines, an account's depth as leading spaces."""
        return self.runner(["sshare", "-a", "-P", "-n", "-o", "Account,User,RawShares"]).stdout

    def signal_batch(self, slurm_job_id: int, signal: str = "USR1") -> None:
        """Signal the batch step only (the hpcsched driver), which passes it on."""
        self.runner(["scancel", f"--signal={signal}", "--batch", str(slurm_job_id)])

    def update_nodes(self, slurm_job_id: int, nodes: int) -> None:
        self.runner(["scontrol", "update", f"JobId={slurm_job_id}", f"NumNodes={nodes}"])

    def requeue(self, slurm_job_id: int) -> None:
        self.runner(["scontrol", "requeue", str(slurm_job_id)])

    def cancel(self, slurm_job_id: int, signal: str | None = None) -> None:
        argv = ["scancel"]
        if signal:
            argv += ["--signal", signal, "--full"]
        self.runner(argv + [str(slurm_job_id)])


def poll_delay(base: float, cap: float, steps: int) -> float:
    """The wait before the next poll of Slurm after ``steps`` polls that found nothing new (or
    failed): ``base`` doubling up to ``cap``. Slurm asks tools that poll it to back off like this."""
    return float(min(cap, base * 2 ** min(max(steps, 0), 16)))
