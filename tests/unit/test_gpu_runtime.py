"""The runtime library's device-neutral parts, checked on the CPU: the device and backend each
rank picks, a checkpoint written on a GPU resuming on the CPU, and step times that wait for the GPU."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from hpcsched.runtime.checkpoint import CheckpointStore
from hpcsched.runtime.distributed import backend_for, device_for
from hpcsched.runtime.environment import Topology
from hpcsched.runtime.snapshot import DataPosition, capture, restore
from hpcsched.runtime.step_clock import StepClock

CPU = torch.device("cpu")


@pytest.mark.parametrize(("local_rank", "count", "expected"), [(0, 2, "cuda:0"), (1, 2, "cuda:1"), (3, 2, "cuda:1")])
def test_each_rank_takes_the_gpu_of_its_local_rank(local_rank: int, count: int, expected: str) -> None:
    topology = Topology(rank=local_rank, local_rank=local_rank, world_size=4, local_world_size=4, launched=True)
    device = device_for(topology, cuda_available=lambda: True, device_count=lambda: count)
    assert device == torch.device(expected)
    assert backend_for(device) == "nccl"


def test_without_cuda_every_rank_trains_on_the_cpu_with_gloo() -> None:
    device = device_for(Topology(local_rank=1, launched=True), cuda_available=lambda: False, device_count=lambda: 0)
    assert device == CPU and backend_for(device) == "gloo"


# --- checkpoints across devices -----------------------------------------------------------------

_AS_IF_FROM_CUDA = False


def _cuda_tag(obj: Any) -> str | None:
    return "cuda:0" if _AS_IF_FROM_CUDA else None


def _no_load(obj: Any, location: str) -> None:
    return None  # the file's own loaders stay in charge


torch.serialization.register_package(1, _cuda_tag, _no_load)


@contextmanager
def saved_as_if_from_cuda() -> Iterator[None]:
    """torch.save records every tensor's device; make it record cuda:0, as on a GPU."""
    global _AS_IF_FROM_CUDA
    _AS_IF_FROM_CUDA = True
    try:
        yield
    finally:
        _AS_IF_FROM_CUDA = False


def model_and_optimizer(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.randn(5, 3)).square().mean()
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()  # momentum buffers now exist: optimizer state has tensors too
    return model, optimizer


def test_checkpoint_saved_on_a_gpu_resumes_on_the_cpu(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer(seed=1)
    random.seed(5)
    np.random.seed(5)
    state = capture(model, optimizer, None, {}, DataPosition(), world_size=2, device=CPU)
    state["rng"]["cuda"] = torch.zeros(16, dtype=torch.uint8)  # what torch.cuda.get_rng_state gives
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    store = CheckpointStore(tmp_path)
    with saved_as_if_from_cuda():
        path = store.save(7, state, epoch=0, world_size=2)
    with pytest.raises(RuntimeError, match="CUDA"):  # the file really names a GPU: loading it as is fails here
        torch.load(path / "state.pt", weights_only=True)

    resumed_model, resumed_optimizer = model_and_optimizer(seed=2)
    checkpoint = store.load_latest()
    assert checkpoint is not None and checkpoint.step == 7
    restore(checkpoint.state, resumed_model, resumed_optimizer, None, {}, device=CPU)
    for saved, loaded in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert loaded.device == CPU and torch.equal(saved, loaded)
    momentum = [resumed_optimizer.state[p]["momentum_buffer"] for p in resumed_model.parameters()]
    assert all(m.device == CPU for m in momentum)
    assert torch.equal(momentum[0], optimizer.state[next(iter(model.parameters()))]["momentum_buffer"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected  # generators as saved


# --- step times -----------------------------------------------------------------------------------


def test_each_step_time_reading_waits_for_the_gpu_first() -> None:
    events: list[str] = []
    now = [0.0]

    def clock() -> float:
        events.append("clock")
        return now[0]

    step_clock = StepClock(clock, lambda: 0.0, synchronize=lambda: events.append("wait for gpu"))
    now[0] = 0.25  # the kernels the step queued have run by the time the wait returns
    assert step_clock.lap().seconds == 0.25
    assert events == ["wait for gpu", "clock"] * 2


def test_a_cpu_job_does_not_wait_for_a_gpu() -> None:
    assert not torch.cuda.is_initialized()
    StepClock(lambda: 0.0, lambda: 0.0).lap()  # the default wait is a no-op without CUDA
    assert not torch.cuda.is_initialized()
