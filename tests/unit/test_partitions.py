"""A job a partition can never start is refused naming the limit (reliability item 9), judged on
the partitions and nodes recorded from the local cluster: "debug" (default, node[1-3], 4 CPUs
each) and "small" (node[1-2], MaxNodes=1, MaxCPUsPerNode=2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hpcsched.errors import ValidationError
from hpcsched.slurm.client import PARTITIONS_CACHE_S, SlurmClient
from hpcsched.slurm.parse import NodeRecord, parse_partitions, parse_sinfo_nodes
from hpcsched.slurm.partitions import JobShape, check_fits
from hpcsched.slurm.runner import CommandResult, SlurmCommandError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"
PARTITIONS = parse_partitions((FIXTURES / "scontrol-partitions.txt").read_text())
NODES = parse_sinfo_nodes((FIXTURES / "sinfo-nodes.json").read_text())


def refusal(shape: JobShape, nodes: list[NodeRecord] = NODES) -> str:
    with pytest.raises(ValidationError) as e:
        check_fits(shape, PARTITIONS, nodes)
    return str(e.value)


@pytest.mark.parametrize(
    "shape",
    [JobShape(None, 3, 4, 0), JobShape("debug", 1, 1, 0), JobShape("small", 1, 2, 0), JobShape(None, 2, 1, 0)],
)
def test_job_the_partition_can_start_passes(shape: JobShape) -> None:
    check_fits(shape, PARTITIONS, NODES)


def test_more_nodes_than_the_default_partition_has_is_refused_naming_its_size() -> None:
    assert refusal(JobShape(None, 1000, 1, 0)) == "--nodes: partition debug has 3 nodes; --nodes 1000 can never start"


def test_more_nodes_than_max_nodes_is_refused_naming_the_limit() -> None:
    message = refusal(JobShape("small", 2, 1, 0))
    assert message.startswith("--nodes: partition small allows at most 1 node per job (MaxNodes)")


def test_unknown_partition_is_refused_listing_the_partitions() -> None:
    assert refusal(JobShape("gpu", 1, 1, 0)) == "--partition: invalid partition gpu: the cluster's partitions are debug, small"


def test_more_cpus_than_any_node_has_is_refused() -> None:
    assert "at most 4 CPUs per node; --cpus-per-node 5 can never start" in refusal(JobShape(None, 1, 5, 0))


def test_more_cpus_than_max_cpus_per_node_is_refused() -> None:
    assert "partition small gives a job at most 2 CPUs per node" in refusal(JobShape("small", 1, 3, 0))


def test_gpus_on_a_partition_without_gpus_is_refused() -> None:
    assert refusal(JobShape(None, 1, 1, 1)).startswith("--gpus-per-node: partition debug has at most 0 GPUs per node")


def test_more_nodes_than_nodes_big_enough_is_refused() -> None:
    one_big = [replace(NODES[0], gpus=4), *NODES[1:]]
    assert "has 1 node with 1 CPU and 4 GPUs; --nodes 2 can never start" in refusal(JobShape(None, 2, 1, 4), one_big)


def test_without_a_default_partition_slurm_decides() -> None:
    check_fits(JobShape(None, 1000, 1, 0), [replace(p, default=False) for p in PARTITIONS], NODES)


class RecordedSlurm:
    """A runner that answers with the recorded output and counts the calls (or fails them)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def __call__(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self.calls.append(tuple(argv))
        if self.fail:
            raise SlurmCommandError(argv, 1, "", "slurm_load_partitions: Unable to contact slurm controller")
        name = "scontrol-partitions.txt" if argv[0] == "scontrol" else "sinfo-nodes.json"
        return CommandResult(tuple(argv), (FIXTURES / name).read_text(), "")


def test_partitions_are_asked_once_per_cache_period() -> None:
    now = [0.0]
    slurm = RecordedSlurm()
    client = SlurmClient(runner=slurm, clock=lambda: now[0])
    assert client.partitions() == (PARTITIONS, NODES)
    now[0] = PARTITIONS_CACHE_S - 1
    client.partitions()
    assert len(slurm.calls) == 2
    now[0] = PARTITIONS_CACHE_S + 1
    client.partitions()
    assert len(slurm.calls) == 4


def test_partitions_slurm_does_not_tell_are_unknown_not_an_error() -> None:
    assert SlurmClient(runner=RecordedSlurm(fail=True)).partitions() is None
