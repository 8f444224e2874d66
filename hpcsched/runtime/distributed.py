"""The process group, and the three small collectives the runtime itself needs.

The group is created from torchrun's environment (``env://``): NCCL when CUDA is there, gloo
otherwise. A process started without torchrun gets no group at all and every collective below
is the identity, so the same script runs as ``python train.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist

from hpcsched.runtime.environment import Topology


def device_for(topology: Topology, cuda_available: Callable[[], bool] = torch.cuda.is_available,
               device_count: Callable[[], int] = torch.cuda.device_count) -> torch.device:
    """cuda:LOCAL_RANK when there is a GPU, else the CPU. The launcher shows each container only
    its node's allocated GPUs, numbered from 0, and starts one process per GPU by default, so
    LOCAL_RANK is the GPU's number; more processes than GPUs share them round-robin."""
    if cuda_available():
        return torch.device("cuda", topology.local_rank % device_count())
    return torch.device("cpu")


def backend_for(device: torch.device) -> str:
    """NCCL for a process on a GPU, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def setup_process_group(topology: Topology, device: torch.device, timeout: timedelta) -> bool:
    """Join torchrun's group unless the script already did; returns whether this call created it."""
    if not topology.launched or not dist.is_available() or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend_for(device), timeout=timeout, device_id=device)
    else:
        dist.init_process_group(backend_for(device), timeout=timeout)
    return True


def teardown_process_group(created: bool) -> None:
    """Destroy the group if this library created it (a group the script made is the script's)."""
    if created and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class Collectives:
    """MAX/MIN of one int, broadcasts of a few ints and sums of a few floats, on a device the
    backend accepts.

    One int all-reduce per step is the whole cost of agreeing on a stop step; an adaptive job
    adds one all-reduce of two floats per step for its noise measurement.
    """

    SETTLE_S = 0.1

    def __init__(self, device: torch.device) -> None:
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.device = device if self.active and dist.get_backend() == "nccl" else torch.device("cpu")
        self._buffer = torch.zeros(1, dtype=torch.int64, device=self.device)

    def settle(self) -> None:
        """Give the backend's worker threads a moment before the interpreter shuts down.

        gloo's worker thread releases a finished collective's tensors a little after the
        collective returns, and releasing a tensor that Python knows takes the GIL. If the
        interpreter is shutting down by then, that thread is cancelled inside C++ code and the
        process aborts ("terminate called without an active exception", exit -6) instead of
        exiting 75 — seen when a stop comes right after the last all-reduce. Sleeping releases
        the GIL so the thread can finish first.
        """
        if self.active:
            time.sleep(self.SETTLE_S)

    def _reduce(self, value: int, op: dist.ReduceOp.RedOpType) -> int:
        if not self.active:
            return value
        self._buffer.fill_(value)
        dist.all_reduce(self._buffer, op=op)
        return int(self._buffer.item())

    def max_int(self, value: int) -> int:
        return self._reduce(value, dist.ReduceOp.MAX)

    def min_int(self, value: int) -> int:
        return self._reduce(value, dist.ReduceOp.MIN)

    def broadcast_int(self, value: int, src: int = 0) -> int:
        return self.broadcast_ints([value], src)[0]

    def broadcast_ints(self, values: list[int], src: int = 0) -> list[int]:
        if not self.active:
            return list(values)
        buffer = torch.tensor(values, dtype=torch.int64, device=self.device)
        dist.broadcast(buffer, src=src)
        return [int(v) for v in buffer.tolist()]

    def sum_floats(self, values: list[float]) -> list[float]:
        if not self.active:
            return list(values)
        buffer = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        return [float(v) for v in buffer.tolist()]
