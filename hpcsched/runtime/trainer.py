"""ElasticTrainer: the few lines a DDP script adds to become resizable by hpcsched.

    trainer = ElasticTrainer(model, optimizer, scheduler, checkpoint_every=100)
    for epoch in trainer.epochs(num_epochs):
        for x, y in trainer.batches(dataset, batch_size=64, seed=0):
            loss = loss_fn(trainer.model(x.to(trainer.device)), y.to(trainer.device))
            loss.backward(); optimizer.step(); optimizer.zero_grad()
            trainer.step(loss=loss.item())
    trainer.finish()

Construction joins torchrun's process group, moves the model to this rank's device, wraps it in
DDP, installs the stop-signal handlers and resumes from the newest valid checkpoint — at whatever
world size this attempt has. ``step()`` writes progress, saves periodic checkpoints and, when the
ranks agree on a stop request, saves, writes the "checkpointed" marker and exits with
EXIT_CHECKPOINTED (75).

``train_step(loss)`` does the backward pass, the optimizer step and ``step()`` in one call; it is
what gradient accumulation and ``adaptive=AdaptiveBatch(...)`` (batch size, learning rate and
accumulation chosen for goodput, see adaptive.py) need, since the trainer then decides which
batches are micro-batches of one optimizer step. The data side (``epochs``, ``batches`` and the
adaptive configuration they follow) is in feed.py.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hpcsched.runtime.adaptive import STATE_KEY, AdaptiveBatch, AdaptiveRun, NoiseProbe, step_at_scaled_lr
from hpcsched.runtime.checkpoint import CheckpointNotSaved, CheckpointStore
from hpcsched.runtime.distributed import Collectives, device_for, setup_process_group, teardown_process_group
from hpcsched.runtime.environment import job_from_env, topology_from_env
from hpcsched.runtime.feed import DataFeed
from hpcsched.runtime.progress import ProgressLog
from hpcsched.runtime.sampler import MicroBatch
from hpcsched.runtime.snapshot import DataPosition, Stateful, capture, restore, unwrap
from hpcsched.runtime.step_clock import StepClock
from hpcsched.runtime.stop import ShutdownWatchdog, StopReason, StopRequest, write_checkpointed_marker

EXIT_CHECKPOINTED = 75  # stopped on request after saving a checkpoint (EX_TEMPFAIL: requeue and resume)
EXIT_NOT_CHECKPOINTED = 74  # stopped on request but the stop-time checkpoint failed; resume uses an older one
SIGTERM_GRACE_S = 25.0  # torchrun kills its workers 30 s after forwarding SIGTERM


class ElasticTrainer(DataFeed):
    """Process group, DDP, checkpoints, elastic data, progress and stop handling for one training run.

    ``model`` and ``optimizer`` are the plain objects (the optimizer built on the model's
    parameters); use ``trainer.model`` (DDP-wrapped when world_size > 1) for training and
    ``trainer.module`` (unwrapped) for evaluation. ``extra_state`` holds further objects with
    state_dict/load_state_dict (a GradScaler, an EMA) to checkpoint under the given names.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Stateful | None = None,
        *,
        checkpoint_every: int | None = 100,
        keep_last: int = 3,
        total_steps: int | None = None,
        agree_every: int = 1,
        extra_state: Mapping[str, Stateful] | None = None,
        shutdown_timeout_s: float = 120.0,
        collective_timeout_s: float = 600.0,
        adaptive: AdaptiveBatch | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if agree_every < 1 or (checkpoint_every is not None and checkpoint_every < 1):
            raise ValueError("agree_every and checkpoint_every must be 1 or more (checkpoint_every may be None)")
        self.topology, self.job = topology_from_env(env), job_from_env(env)
        self.device = device_for(self.topology)
        self._created_group = setup_process_group(self.topology, self.device, timedelta(seconds=collective_timeout_s))
        self._collectives = Collectives(self.device)
        self.module = unwrap(model).to(self.device)
        self.model: nn.Module = model
        if self.topology.world_size > 1 and not isinstance(model, DistributedDataParallel):
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=device_ids)
        self.optimizer, self.scheduler, self.extra_state = optimizer, scheduler, dict(extra_state or {})
        nodes = max(1, self.topology.world_size // max(1, self.topology.local_world_size))
        self.adaptive = AdaptiveRun(adaptive, nodes=nodes, world_size=self.world_size, rank=self.rank) if adaptive else None
        pairs_every = adaptive.measure_every if adaptive and adaptive.noise_probe == "pairs" else 0
        self._probe = NoiseProbe(self.model, self.world_size, pairs_every) if adaptive else None
        if self.adaptive is not None:
            self.extra_state[STATE_KEY] = self.adaptive
        self.checkpoint_every, self.agree_every = checkpoint_every, agree_every
        self.shutdown_timeout_s = shutdown_timeout_s
        self.store = CheckpointStore(self.job.checkpoint_dir, keep_last, identity=self.job.identity)
        progress_file = self.job.progress_file if self.is_main else None
        self.progress = ProgressLog(progress_file, attempt=self.job.attempt, world_size=self.world_size)
        self.progress.total_steps = self._fixed_total_steps = total_steps
        self.progress.fields["nodes"] = nodes
        self.stop_request = StopRequest(self.job.stop_file)
        self.stop_request.install()
        self.position = DataPosition()
        self.resumed_from: Path | None = None
        self._last_saved_step = -1
        self._pending_samples = 0
        self._micro: MicroBatch | None = None  # what the batch last yielded by batches() is
        self._loss_sum = 0.0
        self._reload = False  # the adaptive configuration changed: batches() starts a new loader
        self._step_clock, self._fresh = StepClock(), True  # the next step is not timed when fresh
        self._num_epochs: int | None = None
        self._started = self._checkpointed = False
        self.shutdown_watchdog: ShutdownWatchdog | None = None  # armed by an agreed stop
        self._announced = False
        self._resume()

    @property
    def rank(self) -> int:
        return self.topology.rank

    @property
    def world_size(self) -> int:
        return self.topology.world_size

    @property
    def is_main(self) -> bool:
        return self.topology.rank == 0

    @property
    def epoch(self) -> int:
        return self.position.epoch

    @property
    def global_step(self) -> int:
        return self.position.step

    def _resume(self) -> None:
        """Rank 0 picks the newest valid checkpoint; every rank loads that same one."""
        checkpoint = None
        if self.is_main:
            self.store.clean_temporary()
            checkpoint = self.store.load_latest()
        step = self._collectives.broadcast_int(checkpoint.step if checkpoint else -1)
        if step < 0:
            return
        if checkpoint is None:  # rank 0 has just verified the same files
            checkpoint = self.store.load(step, verify=False)
        self.position = restore(
            checkpoint.state, self.module, self.optimizer, self.scheduler, self.extra_state, device=self.device
        )
        self.resumed_from, self._last_saved_step = checkpoint.path, step
        if self.is_main:
            saved_at = checkpoint.manifest.get("world_size")
            print(f"hpcsched: resumed from {checkpoint.path} (saved at world size {saved_at}, now {self.world_size})")

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._progress_event("start")

    def _progress_event(self, event: str) -> None:
        if self.is_main:
            p = self.position
            self.progress.event(event, step=p.step, epoch=p.epoch, samples=p.samples)

    def train_step(self, loss: torch.Tensor) -> bool:
        """Backward pass of one batch from :meth:`batches`; at the end of an optimizer step also
        ``optimizer.step()`` (at the adapted learning rate), ``zero_grad()`` and :meth:`step`.

        Returns whether the optimizer stepped (False for the earlier micro-batches of a step).
        """
        micro = self._micro
        weight = micro.size / micro.share if micro is not None and micro.count > 1 else 1.0
        (loss * weight if weight != 1.0 else loss).backward()  # type: ignore[no-untyped-call]
        self._loss_sum += float(loss.detach()) * weight
        if micro is not None and not micro.last:
            if self._probe is not None:
                self._probe.after_backward(micro, self._parameters())
            return False
        measurement = None
        if self._probe is not None and micro is not None:
            measurement = self._probe.measure(micro, self._parameters(), self._collectives)
        step_at_scaled_lr(self.optimizer, self.adaptive.lr_factor() if self.adaptive and self.adaptive.config else 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss_value, self._loss_sum = self._loss_sum, 0.0
        self._finish_step(loss_value, None, measurement)
        return True

    def _parameters(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def step(self, loss: float | None = None, samples: int | None = None) -> None:
        """Call after each optimizer step. ``samples``: global samples of the step (default: from batches()).

        Adaptive jobs use :meth:`train_step` instead, which calls this part itself.
        """
        if self.adaptive is not None:
            raise RuntimeError("an adaptive job steps with trainer.train_step(loss), not trainer.step()")
        self._finish_step(loss, samples, None)

    def log_metrics(self, **metrics: float) -> None:
        """Record values such as validation accuracy in the job's progress (rank 0; others ignore).

        They show in ``hpcsched sweep status`` and in the progress file, with the time and step.
        """
        clean = {}
        for name, value in metrics.items():
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"metric {name}={value!r} is not a finite number")
            clean[name] = number
        if self.is_main:
            p = self.position
            self.progress.event("metrics", step=p.step, epoch=p.epoch, samples=p.samples, metrics=clean)

    def _finish_step(self, loss: float | None, samples: int | None, measurement: Any) -> None:
        """The bookkeeping of one finished optimizer step: timing, progress, stop agreement,
        checkpoints and (adaptive) re-choosing the configuration."""
        lap = None if self._fresh else self._step_clock.lap()  # without waits for a CPU others held
        seconds, self._fresh = lap.seconds if lap else None, False
        self._start()
        micro = self._micro
        consumed, self._pending_samples = self._pending_samples, 0
        p = self.position
        p.position += consumed
        p.step += 1
        p.samples += samples if samples is not None else consumed
        regular = micro is None or micro.end - micro.begin == self.progress.global_batch
        if self.adaptive is not None and micro is not None:
            self.adaptive.record(micro, seconds, measurement)
            regular = regular and micro.count == (self.adaptive.config or (0, 0))[1] + 1
            self.progress.fields.update(self.adaptive.fields())
        if self.is_main:
            self.progress.step(step=p.step, epoch=p.epoch, samples=p.samples, loss=loss,
                               step_time=seconds if regular else None, cpu_wait=lap.waited if lap else 0.0)  # fmt: skip
        if p.step % self.agree_every == 0:
            local = self.stop_request.local_reason()
            if local and not self._announced:
                self._announced = True  # one line per rank: the last hop of the signal chain, for the log
                print(f"hpcsched: rank {self.rank}: stop requested ({local.name})", file=sys.stderr, flush=True)
            reason = StopReason(self._collectives.max_int(local))
            if reason:
                self._stop(reason)
        if self.checkpoint_every and p.step % self.checkpoint_every == 0:
            self.save_checkpoint()
        if self.adaptive is not None and self.adaptive.due(p.step):
            self._adapt()
        self._step_clock.start()  # bookkeeping (checkpoints, progress) is not step time

    def save_checkpoint(self) -> Path | None:
        """Rank 0 saves the current state (others return None); None also when the save failed."""
        step = self.position.step
        if step == self._last_saved_step:
            return self.store.path_for(step) if self.is_main else None
        if not self.is_main:
            return None
        state = capture(
            self.module, self.optimizer, self.scheduler, self.extra_state, self.position,
            world_size=self.world_size, device=self.device,
        )  # fmt: skip
        try:
            path = self.store.save(step, state, epoch=self.position.epoch, world_size=self.world_size)
        except CheckpointNotSaved as error:
            print(f"hpcsched: {error}", file=sys.stderr, flush=True)
            return None
        self._last_saved_step = step
        self._progress_event("checkpoint")
        return path

    def _stop(self, reason: StopReason) -> NoReturn:
        """All ranks agreed to stop after this step: save, write the marker, wait for each other, exit."""
        timeout = min(self.shutdown_timeout_s, SIGTERM_GRACE_S) if reason is StopReason.SIGTERM else self.shutdown_timeout_s
        self.shutdown_watchdog = ShutdownWatchdog(timeout, self._exit_code)
        self.shutdown_watchdog.start()
        print(
            f"hpcsched: rank {self.rank}: stopping after step {self.position.step} ({reason.name})", file=sys.stderr, flush=True
        )
        saved = 1
        if self.is_main:
            path = self.save_checkpoint()
            saved = int(path is not None and self._write_marker(path))
            self._checkpointed = bool(saved)
            self._progress_event("stop")
            self.stop_request.consume_stop_file()
        try:
            # The barrier: no rank exits (making torchrun tear the others down) before rank 0 is done.
            saved = self._collectives.min_int(saved)
        except Exception as error:
            print(f"hpcsched: ranks could not confirm the stop: {error}", file=sys.stderr)
            saved = int(self._checkpointed)
        self._checkpointed = bool(saved)
        code = self._exit_code()
        if self.is_main:
            print(f"hpcsched: stop ({reason.name}) at step {self.position.step}; exiting with {code}", flush=True)
        self.stop_request.ignore_further()  # the watchdog stays armed in case leaving hangs
        self.progress.close()
        self._step_clock.close()
        self._collectives.settle()
        teardown_process_group(self._created_group)
        raise SystemExit(self.job.checkpointed_exit if code == EXIT_CHECKPOINTED else code)

    def _exit_code(self) -> int:
        return EXIT_CHECKPOINTED if self._checkpointed else EXIT_NOT_CHECKPOINTED

    def _write_marker(self, checkpoint: Path) -> bool:
        marker = self.job.checkpointed_marker
        return marker is None or write_checkpointed_marker(marker, step=self.position.step, checkpoint=checkpoint)

    def finish(self, save: bool = True) -> None:
        """End of training: a final checkpoint (unless ``save=False``), the "done" line, no more group."""
        self._start()
        if save:
            self.save_checkpoint()
        self._progress_event("done")
        self.progress.close()
        self._step_clock.close()
        self.stop_request.uninstall()
        self._collectives.settle()
        teardown_process_group(self._created_group)
