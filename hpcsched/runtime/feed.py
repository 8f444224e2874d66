"""The data side of :class:`~hpcsched.runtime.trainer.ElasticTrainer`: the epochs still to run
and this rank's batches of them, resumable mid-epoch at any world size (ElasticBatchSampler),
split into micro-batches when gradients accumulate, and, for adaptive jobs, the configuration
(batch size, accumulation) that the trainer re-chooses as it goes.

A mixin: the trainer holds the state (its ``__init__`` sets every attribute declared below), and
``train_step``/``step`` consume what ``batches`` leaves (the micro-batch, the samples taken).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from hpcsched.runtime.adaptive import AdaptiveRun
from hpcsched.runtime.distributed import Collectives
from hpcsched.runtime.environment import Topology
from hpcsched.runtime.progress import ProgressLog
from hpcsched.runtime.sampler import ElasticBatchSampler, MicroBatch, epoch_seed
from hpcsched.runtime.snapshot import DataPosition


class DataFeed:
    topology: Topology
    model: nn.Module
    adaptive: AdaptiveRun | None
    progress: ProgressLog
    position: DataPosition
    _collectives: Collectives
    _micro: MicroBatch | None
    _pending_samples: int
    _reload: bool
    _fresh: bool
    _num_epochs: int | None
    _fixed_total_steps: int | None

    def _start(self) -> None:
        """The trainer's: the progress line that the run has started (once)."""
        raise NotImplementedError

    def epochs(self, num_epochs: int) -> Iterator[int]:
        """The epochs still to run, starting with the resumed one (use this, not range(), for the epoch loop)."""
        self._num_epochs = num_epochs
        while self.position.epoch < num_epochs:
            yield self.position.epoch
            self.position.epoch += 1
            self.position.position = 0

    def batches(
        self, dataset: Dataset[Any], batch_size: int, *, seed: int = 0, shuffle: bool = True, **loader_args: Any
    ) -> Iterator[Any]:
        """This rank's batches of the rest of the current epoch (``batch_size`` per rank).

        With ``adaptive``, ``batch_size`` times the first attempt's world size is the global batch
        the job starts at, and the trainer changes the batch (and splits it into micro-batches for
        gradient accumulation) as it goes: use :meth:`train_step` then. ``loader_args`` go to
        torch's DataLoader (collate_fn, num_workers, pin_memory, ...).
        """
        if not isinstance(dataset, Sized):
            raise TypeError("batches() needs a map-style dataset with __len__")
        if self.adaptive is not None:
            self._begin_adaptive(batch_size)
        generator = loader_args.pop("generator", None)
        while True:
            sampler = self._sampler(len(dataset), batch_size, seed, shuffle)
            steps = sampler.steps()
            self._start()
            if not steps:
                return
            # Its own generator: a DataLoader otherwise draws its workers' base seed from the global
            # RNG at every iterator, and a resumed epoch (one more iterator) would diverge from an
            # uninterrupted run.
            loader = DataLoader(
                dataset, batch_sampler=sampler,
                generator=generator or torch.Generator().manual_seed(epoch_seed(seed, self.position.epoch)), **loader_args,
            )  # fmt: skip
            self._fresh = True  # the first step of a loader includes its start (and the evaluation before it)
            for micro, batch in zip(sampler.micro_batches(), loader, strict=True):
                self._micro = micro
                if micro.last:
                    self._pending_samples += micro.end - micro.begin  # counted at step()
                if not micro.last and isinstance(self.model, DistributedDataParallel):
                    with self.model.no_sync():  # accumulate locally; the last micro-batch all-reduces
                        yield batch
                else:
                    yield batch
                if self._reload and micro.last:
                    break
            else:
                return
            self._reload = False

    def _sampler(self, size: int, batch_size: int, seed: int, shuffle: bool) -> ElasticBatchSampler:
        local, accum = self.adaptive.config or (batch_size, 0) if self.adaptive else (batch_size, 0)
        measure = self.adaptive.options.split_every if self.adaptive and self.topology.world_size == 1 and accum == 0 else 0
        sampler = ElasticBatchSampler(
            size, local, rank=self.topology.rank, world_size=self.topology.world_size, seed=seed, shuffle=shuffle,
            accum_steps=accum, measure_every=measure, first_step=self.position.step,
        )  # fmt: skip
        sampler.set_epoch(self.position.epoch, self.position.position)
        self.progress.global_batch = sampler.global_batch
        self.progress.fields.update(local_batch=local, accum_steps=accum)
        if self._fixed_total_steps is None and self._num_epochs is not None:
            later_epochs = max(0, self._num_epochs - self.position.epoch - 1)
            left = len(sampler.steps()) + later_epochs * sampler.steps_per_epoch()
            self.progress.total_steps = self.position.step + left
            self.progress.total_samples = self._num_epochs * size
        return sampler

    def _begin_adaptive(self, batch_size: int) -> None:
        """The base batch at the job's first start, and this attempt's first configuration."""
        assert self.adaptive is not None
        if self.adaptive.base_batch is None:
            self.adaptive.base_batch = batch_size * self.topology.world_size
        if self.adaptive.config is None:
            self._adapt()

    def _adapt(self) -> None:
        """Re-choose the adaptive configuration; on a change, log it and restart the loader."""
        assert self.adaptive is not None
        before = self.adaptive.config
        if self.adaptive.decide(self._collectives):
            self._reload = before is not None
            if self.topology.rank == 0:
                self.adaptive.log_change(self.progress, self.position, first=before is None)
