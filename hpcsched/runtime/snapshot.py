"""What a checkpoint holds, and putting it back at any world size (reliability D7, C5).

Everything in it is world-size independent: the unwrapped model's state_dict (no DDP "module."
prefix), the optimizer's and scheduler's state_dicts (replicated under DDP), the data position
counted in samples of the epoch consumed by all ranks together, and rank 0's random number
generator states. Per-rank RNG states do not map onto another world size, so rank 0's are
restored on every rank; scripts that seed every rank alike (the usual DDP practice) see no
difference. Everything is stored as tensors, ints, floats and containers so that
``torch.load(weights_only=True)`` can read it.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

try:
    import numpy as np
except ImportError:  # numpy is optional inside the training image
    np = None  # type: ignore[assignment]

STATE_FORMAT = 1


class Stateful(Protocol):
    """Anything with state_dict/load_state_dict: a scheduler, a GradScaler, a user object."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any], /) -> Any: ...


@dataclass
class DataPosition:
    """Where training is: ``position`` samples of epoch ``epoch`` consumed, over all ranks together."""

    epoch: int = 0
    position: int = 0
    step: int = 0
    samples: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataPosition:
        return cls(**{name: int(data[name]) for name in ("epoch", "position", "step", "samples")})


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP and/or torch.compile, whose state_dict has no wrapper prefixes."""
    while True:
        inner = model.module if isinstance(model, DistributedDataParallel) else getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def capture_rng(device: torch.device) -> dict[str, Any]:
    python_version, python_state, gauss = random.getstate()
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": python_version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": gauss},
        "numpy": None,
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    if np is not None:
        state = np.random.get_state(legacy=True)
        assert isinstance(state, tuple)  # legacy=True: ("MT19937", keys, pos, has_gauss, cached)
        kind, keys, pos, has_gauss, cached = state
        rng["numpy"] = {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        }
    return rng


def restore_rng(rng: Mapping[str, Any], device: torch.device) -> None:
    """Restore the generators, whichever device the checkpoint was loaded to (the states are
    CPU tensors for torch). A GPU generator's state is used only on a GPU; a job that resumes on
    the CPU leaves it, and one saved on the CPU leaves the GPU's generator as seeded."""
    torch.set_rng_state(rng["torch"].cpu())
    python = rng["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    saved_np = rng.get("numpy")
    if np is not None and saved_np is not None:
        keys = saved_np["keys"].cpu().numpy().astype(np.uint32)
        np.random.set_state((saved_np["kind"], keys, saved_np["pos"], saved_np["has_gauss"], saved_np["cached"]))
    if rng.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


def capture(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Stateful | None,
    extra: Mapping[str, Stateful],
    position: DataPosition,
    *,
    world_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """The checkpoint payload for the current state."""
    return {
        "format": STATE_FORMAT,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": {name: obj.state_dict() for name, obj in extra.items()},
        "data": asdict(position),
        "rng": capture_rng(device),
        "world_size": world_size,
    }


def restore(
    state: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Stateful | None,
    extra: Mapping[str, Stateful],
    *,
    device: torch.device,
) -> DataPosition:
    """Load a payload into the given objects (at any world size); returns the data position."""
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"checkpoint state format {state.get('format')!r} is not {STATE_FORMAT}")
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    # The optimizer stepped in an earlier attempt; without this flag torch's LR schedulers warn
    # "lr_scheduler.step() before optimizer.step()" when an attempt resumes at an epoch's end.
    optimizer._opt_called = True  # type: ignore[attr-defined]
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    elif scheduler is not None:
        print("hpcsched: the checkpoint has no scheduler state; the scheduler starts afresh", file=sys.stderr)
    saved_extra = state.get("extra") or {}
    for name, obj in extra.items():
        if name in saved_extra:
            obj.load_state_dict(saved_extra[name])
        else:
            print(f"hpcsched: the checkpoint has no state for {name!r}; it starts afresh", file=sys.stderr)
    restore_rng(state["rng"], device)
    return DataPosition.from_dict(state["data"])
