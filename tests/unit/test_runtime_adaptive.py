"""Adaptive batch sizes in ElasticTrainer, in one process: accumulation, noise, changes, resume.

Two processes (the DDP communication hook that measures the noise across replicas, a resume at
another world size) are in tests/runtime/test_adaptive_ddp.py.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from hpcsched.models.adapt import AdaptChoice
from hpcsched.models.efficiency import noise_from_micro_batches
from hpcsched.runtime import EXIT_CHECKPOINTED, AdaptiveBatch, ElasticTrainer
from hpcsched.runtime import adaptive as adaptive_module

SIZE, BATCH = 64, 8


pytestmark = pytest.mark.usefixtures("restore_signals")


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SIZE, 4, generator=generator)
    return TensorDataset(x, x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(SIZE, 1, generator=generator), torch.arange(SIZE))


def make(job: Path, attempt: int = 1, **kwargs: Any) -> ElasticTrainer:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    env = {"HPCSCHED_JOB_DIR": str(job), "HPCSCHED_ATTEMPT": str(attempt), "HPCSCHED_JOB_ID": "9"}
    return ElasticTrainer(model, optimizer, env=env, checkpoint_every=None, **kwargs)


def train(trainer: ElasticTrainer, epochs: int, seen: list[tuple[int, int]] | None = None,
          signal_at: int | None = None) -> None:  # fmt: skip
    for epoch in trainer.epochs(epochs):
        for x, y, index in trainer.batches(dataset(), batch_size=BATCH, seed=1):
            if seen is not None:
                seen.extend((epoch, i) for i in index.tolist())
            if signal_at is not None and trainer.global_step + 1 == signal_at:
                os.kill(os.getpid(), signal.SIGUSR1)
            trainer.train_step(nn.functional.mse_loss(trainer.model(x), y))
    trainer.finish()


def progress(job: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]


def weights(trainer: ElasticTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.module.parameters()]


@pytest.fixture
def reference(tmp_path: Path) -> list[torch.Tensor]:
    """Weights after 3 epochs at a fixed batch of 8, one optimizer step per batch."""
    (tmp_path / "fixed").mkdir()
    trainer = make(tmp_path / "fixed")
    train(trainer, 3)
    return weights(trainer)


@pytest.mark.parametrize(
    ("limits", "micro"),
    [(AdaptiveBatch(max_batch_size=BATCH, max_local_batch=4), (4, 1)),  # accumulation: 2 x 4
     (AdaptiveBatch(max_batch_size=BATCH, measure_every=2, noise_probe="split"), (8, 0)),  # every 2nd step split
     (AdaptiveBatch(max_batch_size=BATCH, measure_every=2), (8, 0))],   # pairs of consecutive steps: nothing split
    ids=["accumulation", "measurement-split", "measurement-pairs"],
)  # fmt: skip
def test_micro_batches_train_exactly_like_the_whole_batch(
    job: Path, reference: list[torch.Tensor], limits: AdaptiveBatch, micro: tuple[int, int]
) -> None:
    trainer = make(job, adaptive=limits)
    train(trainer, 3)
    for got, want in zip(weights(trainer), reference, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    lines = progress(job)
    adapt = [r for r in lines if r["event"] == "adapt"]
    assert [(r["reason"], r["local_batch"], r["accum_steps"], r["global_batch"]) for r in adapt] == [("initial", *micro, 8)]
    last = lines[-1]  # every line carries the configuration and the noise estimate
    assert last["grad_sqr"] is not None and last["grad_var"] > 0  # the noise was measured from the micro-batches
    assert last["adaptive"] is True and last["base_batch"] == 8 and last["max_batch"] == 8 and last["nodes"] == 1
    assert last["event"] == "done" and last["samples"] == 3 * SIZE


def scripted(monkeypatch: pytest.MonkeyPatch, configs: list[tuple[int, float]]) -> None:
    """Make the decision return these (local batch, learning-rate factor) in turn (the decision
    itself depends on measured times; tests/unit/test_models_adapt.py checks it)."""
    pending = list(configs)

    def choose(*args: Any, **kwargs: Any) -> AdaptChoice:
        local, factor = pending.pop(0) if pending else configs[-1]
        return AdaptChoice(local_bsz=local, accum_steps=0, global_bsz=local, lr_factor=factor, efficiency=1.0,
                           reason="goodput")  # fmt: skip

    monkeypatch.setattr(adaptive_module, "choose", choose)


def test_batch_changes_mid_epoch_still_see_every_sample_once(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch, [(8, 1.0), (24, 1.0), (5, 1.0), (16, 1.0)])
    trainer = make(job, adaptive=AdaptiveBatch(max_batch_size=64, adapt_every=3, first_adapt=3, measure_every=0))
    seen: list[tuple[int, int]] = []
    train(trainer, 4, seen)
    assert Counter(seen) == Counter((e, i) for e in range(4) for i in range(SIZE))
    adapt = [(r["step"], r["global_batch"]) for r in progress(job) if r["event"] == "adapt"]
    assert adapt[:4] == [(0, 8), (3, 24), (6, 5), (9, 16)]
    flushed = [(r["step"], r["global_batch"]) for r in progress(job) if r["event"] == "step"]
    assert flushed[:3] == [(3, 8), (6, 24), (9, 5)]  # each configuration's steps end on a line of their own


def test_learning_rate_is_scaled_for_the_step_and_restored_for_the_scheduler(job: Path) -> None:
    trainer = make(job, adaptive=AdaptiveBatch(max_batch_size=BATCH, lr_scaling="sqrt"))
    assert trainer.adaptive is not None
    seen_lrs: list[float] = []
    original = trainer.optimizer.step

    def step(*args: Any, **kwargs: Any) -> Any:
        seen_lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return original(*args, **kwargs)

    trainer.optimizer.step = step  # type: ignore[method-assign]
    trainer.adaptive.lr_factor = lambda: 2.0  # type: ignore[method-assign]
    train(trainer, 1)
    assert seen_lrs and all(lr == pytest.approx(0.1) for lr in seen_lrs)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_resume_keeps_the_base_batch_and_the_measured_step_times(job: Path) -> None:
    first = make(job, adaptive=AdaptiveBatch(max_batch_size=32))
    with pytest.raises(SystemExit) as stopped:
        train(first, 3, signal_at=12)
    assert first.shutdown_watchdog is not None
    first.shutdown_watchdog.cancel()
    assert stopped.value.code == EXIT_CHECKPOINTED
    assert first.adaptive is not None
    before = first.adaptive.times.as_rows()
    assert before and first.adaptive.noise.weight > 0

    second = make(job, attempt=2, adaptive=AdaptiveBatch(max_batch_size=32))
    assert second.adaptive is not None
    assert second.adaptive.base_batch == BATCH
    assert second.adaptive.times.as_rows() == before
    assert second.adaptive.noise.weight == pytest.approx(first.adaptive.noise.weight)
    train(second, 3)
    assert second.global_step > 12 and progress(job)[-1]["event"] == "done"


def test_adaptive_jobs_must_use_train_step_and_metrics_must_be_numbers(job: Path) -> None:
    trainer = make(job, adaptive=AdaptiveBatch(max_batch_size=16))
    with pytest.raises(RuntimeError, match="train_step"):
        trainer.step(loss=1.0)
    trainer.log_metrics(val_acc=0.5, top5=0.75)
    with pytest.raises(ValueError, match="metric val_acc=nan is not a finite number"):
        trainer.log_metrics(val_acc=float("nan"))
    metrics = [r for r in progress(job) if r["event"] == "metrics"]
    assert [r["metrics"] for r in metrics] == [{"val_acc": 0.5, "top5": 0.75}]
    with pytest.raises(ValueError, match="lr_scaling 'linear'"):
        AdaptiveBatch(max_batch_size=16, lr_scaling="linear")


def test_re_chosen_early_in_each_attempt_then_every_adapt_every_steps() -> None:
    run = adaptive_module.AdaptiveRun(AdaptiveBatch(max_batch_size=64, adapt_every=50, first_adapt=10), nodes=1,
                                      world_size=1, rank=0)  # fmt: skip
    due = []
    for step in range(1, 131):
        run.steps_here += 1
        if run.due(step):
            due.append(step)
    assert due == [10, 20, 40, 50, 100]
    run.steps_here = 0  # a new attempt (a resize) starts the early checks again, counted from its start
    due = [step for step in range(131, 200) if (setattr(run, "steps_here", run.steps_here + 1), run.due(step))[1]]
    assert due == [140, 150, 170]


def test_a_decision_grows_the_batch_at_most_twice_past_what_was_measured() -> None:
    run = adaptive_module.AdaptiveRun(AdaptiveBatch(max_batch_size=512), nodes=1, world_size=1, rank=0)
    run.base_batch = 16
    assert run.limits().max_global_bsz == 512  # nothing measured yet: the user's limit
    for local, seconds in ((16, 0.010), (32, 0.011)):  # step time hardly grows: the fit favours 512
        for _ in range(5):
            run.times.add((1, 1, local, 0), seconds)
    run.noise = run.noise.update(adaptive_module.NoiseMeasurement(grad_sqr=0.0, grad_var=1.0))  # "all noise"
    run.decide(SingleProcess())
    assert run.config == (64, 0)  # not 512: twice the largest measured batch
    uncapped = adaptive_module.AdaptiveRun(AdaptiveBatch(max_batch_size=512, max_growth=0), nodes=1, world_size=1, rank=0)
    uncapped.base_batch, uncapped.times, uncapped.noise = 16, run.times, run.noise
    uncapped.decide(SingleProcess())
    assert uncapped.config == (512, 0)
    with pytest.raises(ValueError, match="max_growth"):
        AdaptiveBatch(max_batch_size=64, max_growth=0.5)


class SingleProcess:
    """Collectives of a one-process job: a broadcast returns what it is given."""

    def broadcast_ints(self, values: list[int]) -> list[int]:
        return values


def test_the_efficiency_form_is_the_users_choice_and_reaches_the_decision() -> None:
    def decided(form: str) -> tuple[int, int] | None:
        run = adaptive_module.AdaptiveRun(AdaptiveBatch(max_batch_size=512, efficiency=form), nodes=1, world_size=1,
                                          rank=0)  # fmt: skip
        run.base_batch, run.config = 16, (256, 0)
        for local in (16, 32, 64, 128, 256):  # a step costs the same at every batch
            for _ in range(5):
                run.times.add((1, 1, local, 0), 0.030 + 0.000002 * local)
        for _ in range(200):
            run.noise = run.noise.update(adaptive_module.NoiseMeasurement(grad_sqr=1.0, grad_var=150.0))
        run.decide(SingleProcess())
        return run.config

    assert decided("sgd") == (256, 0)
    assert decided("sqrt") == (512, 0)
    with pytest.raises(ValueError, match="efficiency 'adam'"):
        AdaptiveBatch(max_batch_size=64, efficiency="adam")


def test_pairs_probe_measures_two_consecutive_steps_of_one_batch_size() -> None:
    weight = nn.Parameter(torch.zeros(3))
    probe = adaptive_module.NoiseProbe(nn.Linear(1, 1), world_size=1, pairs_every=4)
    micro = adaptive_module.MicroBatch  # one micro-batch per step: (step, begin, end, index, count, size, share)

    def step(number: int, grad: list[float], share: int = 8) -> Any:
        weight.grad = torch.tensor(grad)
        return probe.measure(micro(number, 0, share, 0, 1, share, share), [weight], collectives=None)  # type: ignore[arg-type]

    assert step(3, [9.0, 9.0, 9.0]) is None  # not due (3 % 4): nothing kept
    assert step(4, [1.0, 2.0, 2.0]) is None  # due: kept for the next step
    got = step(5, [3.0, 0.0, 4.0])
    # |g1|^2 = 9, |g2|^2 = 25, g1.g2 = 11: the mean of two batches of 8 against one of 16
    assert got == noise_from_micro_batches((9 + 25) / 2, (9 + 25 + 2 * 11) / 4, 8, 2)
    assert got.grad_var > 0
    assert step(6, [1.0, 1.0, 1.0]) is None  # the pair is used once
    assert step(8, [1.0, 2.0, 2.0]) is None
    assert step(9, [3.0, 0.0, 4.0], share=16) is None  # the batch changed in between: no measurement
    assert step(12, [1.0, 2.0, 2.0]) is None
    assert step(14, [3.0, 0.0, 4.0]) is None  # not consecutive
    with pytest.raises(ValueError, match="noise_probe 'halves'"):
        AdaptiveBatch(max_batch_size=64, noise_probe="halves")


def test_only_the_split_probe_splits_steps() -> None:
    assert AdaptiveBatch(max_batch_size=64, measure_every=4).split_every == 0
    assert AdaptiveBatch(max_batch_size=64, measure_every=4, noise_probe="split").split_every == 4
