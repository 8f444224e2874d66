"""Benchmark (issue 16, item 1: gradient noise as measured): the runtime's noise probe against the
true gradient noise scale of the search task, and the statistical efficiency each implies.

Trains examples/digits_nas.py's model (--trial, default c8-d2) on the data of one of the search's
workloads (--workload, as ``search_baselines.py``; default fixed-step: images 8x8, 24 shifted
copies, noise 0.2) with Adam
at one fixed batch (--batch, learning rate scaled from 1e-3 at 16 by sqrt(B/16), as the fixed runs
there), one CPU thread. At step 50 and after every epoch it measures, at the same weights:

* truth: ``|g|^2`` of the gradient over the whole training set, and ``tr(Sigma)`` from --draws
  gradients of 32 random samples (``E|G_32 - g|^2 = tr(Sigma) / 32``);
* probe: the mean of --draws measurements taken as a single-process adaptive job takes them (a
  batch of --batch split in halves, ``hpcsched.models.efficiency.noise_from_two_batch_sizes``);

each on the raw gradients and on the gradients as Adam weighs them (each coordinate divided by
``sqrt(sqrt(v_hat) + eps)``, v_hat from the optimizer's state). During training it also keeps the
estimator the adaptive mode keeps (``NoiseScaleEstimator``, fed the probe's measurement every 4th
step, as the runtime does with ``noise_probe="split"``) and, beside it, the one the default probe
feeds (``"pairs"``: the gradients of every 4th step and the step after it, taken across the
optimizer's update between them): the noise scale the adaptive choice uses. The noise scale
``phi = tr(Sigma) / |g|^2`` implies a batch B's statistical efficiency relative to batch 16,
``(phi + 16) / (phi + B)`` (the goodput model's); the fixed runs of the search measured it directly
(epochs to target, ``results/search_baselines-<workload>.md``).

    nice -n 10 .venv/bin/python benchmarks/noise_probe.py       # about 2 minutes

Writes benchmarks/results/noise_probe.{md,json} (``noise_probe-cpu`` for ``--workload cpu``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from common import trial_shape, write_results
from search_baselines import WORKLOADS, search_results
from torch import nn

from hpcsched.models.efficiency import NoiseScaleEstimator, noise_from_consecutive_steps, noise_from_two_batch_sizes

REPO = Path(__file__).resolve().parents[1]
SMALL = 32  # samples per draw of the true tr(Sigma)
MEASURE_EVERY = 4  # as AdaptiveBatch.measure_every
KINDS = ("raw", "adam")


def load_example() -> Any:
    """examples/digits_nas.py (it imports digits_cnn beside it)."""
    sys.path.insert(0, str(REPO / "examples"))
    return importlib.import_module("digits_nas")


def data_options(workload: str) -> tuple[int, int, float]:
    """(image size, copies, pixel noise) of a search workload's digits_nas.py options."""
    options = dict(zip(WORKLOADS[workload][::2], WORKLOADS[workload][1::2], strict=True))
    return int(options["--image-size"]), int(options["--augment"]), float(options["--noise"])


def efficiency(phi: float, batch: int, base: int = 16) -> float:
    """The goodput model's statistical efficiency of ``batch`` relative to ``base`` at noise scale ``phi``."""
    return (phi + base) / (phi + batch) if phi >= 0 else math.nan


class Task:
    def __init__(self, args: argparse.Namespace) -> None:
        example = load_example()
        torch.manual_seed(args.seed)
        train, _ = example.digits(args.seed)
        self.generator = torch.Generator().manual_seed(args.seed)
        size, copies, noise = data_options(args.workload)
        self.x, self.y = example.harder(train, size, copies, noise, self.generator).tensors
        channels, depth = trial_shape(args.trial)
        self.model = example.make_model(channels, depth, 64, 3, size)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3 * math.sqrt(args.batch / 16))
        self.params = list(self.model.parameters())
        self.loss = nn.CrossEntropyLoss()

    def grad(self, idx: torch.Tensor) -> torch.Tensor:
        self.model.zero_grad()
        self.loss(self.model(self.x[idx]), self.y[idx]).backward()
        return torch.cat([p.grad.detach().flatten().double() for p in self.params if p.grad is not None])

    def full_grad(self) -> torch.Tensor:
        n, total = len(self.x), None
        for start in range(0, n, 4096):
            idx = torch.arange(start, min(n, start + 4096))
            part = self.grad(idx) * len(idx)
            total = part if total is None else total + part
        assert total is not None
        return total / n

    def adam_weight(self) -> torch.Tensor | None:
        """1 / sqrt(sqrt(v_hat) + eps) per coordinate; None before the first step."""
        group = self.optimizer.param_groups[0]
        parts = []
        for p in self.params:
            state = self.optimizer.state.get(p)
            if not state:
                return None
            v_hat = state["exp_avg_sq"].double().flatten() / (1 - group["betas"][1] ** float(state["step"]))
            parts.append((v_hat.sqrt() + group["eps"]).rsqrt())
        return torch.cat(parts)

    def draw(self, size: int) -> torch.Tensor:
        return torch.randint(0, len(self.x), (size,), generator=self.generator)


def two_batch(small: torch.Tensor, big: torch.Tensor, batch: int) -> Any:
    return noise_from_two_batch_sizes(float(small.pow(2).sum()), batch // 2, float(big.pow(2).sum()), batch)


def consecutive(first: torch.Tensor, second: torch.Tensor, batch: int) -> Any:
    """What the runtime's pairs probe measures from two consecutive steps' gradients."""
    return noise_from_consecutive_steps(float(first.pow(2).sum()), float(second.pow(2).sum()), float(first.dot(second)), batch)


def checkpoint(task: Task, args: argparse.Namespace) -> dict[str, Any]:
    """Truth and probe at the current weights, raw and Adam-weighted."""
    g = task.full_grad()
    draws = [task.grad(task.draw(SMALL)) for _ in range(args.draws)]
    splits = []
    for _ in range(args.draws):
        idx = task.draw(args.batch)
        splits.append((task.grad(idx[: args.batch // 2]), task.grad(idx)))
    weight = task.adam_weight()
    out: dict[str, Any] = {}
    for kind in KINDS:
        w = torch.ones_like(g) if kind == "raw" or weight is None else weight
        sqr = float((g * w).pow(2).sum())
        var = SMALL * statistics.fmean(float(((d - g) * w).pow(2).sum()) for d in draws)
        probes = [two_batch(s * w, b * w, args.batch) for s, b in splits]
        p_sqr = statistics.fmean(m.grad_sqr for m in probes)
        p_var = statistics.fmean(m.grad_var for m in probes)
        out[kind] = {"true_sqr": sqr, "true_var": var, "true_phi": var / sqr,
                     "probe_sqr": p_sqr, "probe_var": p_var, "probe_phi": p_var / p_sqr if p_sqr > 0 else math.inf}  # fmt: skip
    return out


def train(task: Task, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    running, pairs = NoiseScaleEstimator(), NoiseScaleEstimator()
    step, n, previous = 0, len(task.x), None
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=task.generator)
        for start in range(0, n - args.batch + 1, args.batch):
            idx = order[start : start + args.batch]
            if step % MEASURE_EVERY == 0:  # the probe's split step, as a single-process adaptive job takes it
                small = task.grad(idx[: args.batch // 2])
                gradient = task.grad(idx)
                running = running.update(two_batch(small, gradient, args.batch))
            else:
                gradient = task.grad(idx)
            if previous is not None:  # the second of a pair of consecutive steps (noise_probe="pairs")
                pairs = pairs.update(consecutive(previous, gradient, args.batch))
            previous = gradient if step % MEASURE_EVERY == 0 else None
            task.optimizer.step()
            step += 1
            if step == 50:
                rows.append(measured("step 50", step, task, args, running, pairs))
        rows.append(measured(f"epoch {epoch + 1}", step, task, args, running, pairs))
        r = rows[-1]
        print(f"{r['when']}: true phi {r['raw']['true_phi']:.0f}, probe {r['raw']['probe_phi']:.0f}, "
              f"running {r['running_phi']:.0f}, pairs {r['pairs_phi']:.0f}", file=sys.stderr, flush=True)  # fmt: skip
    return rows


def measured(when: str, step: int, task: Task, args: argparse.Namespace, running: NoiseScaleEstimator,
             pairs: NoiseScaleEstimator) -> dict[str, Any]:  # fmt: skip
    """One row: truth and probe now, and both running estimates so far."""
    return {"when": when, "step": step, **checkpoint(task, args), "running_phi": phi_of(running), "pairs_phi": phi_of(pairs)}


def phi_of(estimator: NoiseScaleEstimator) -> float:
    noise = estimator.estimate
    return noise.grad_var / noise.grad_sqr if noise.grad_sqr > 0 else math.inf


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    data_args = " ".join(WORKLOADS[args.workload][:6])
    lines = [f"# The noise probe against the true gradient noise scale ({args.trial}, batch {args.batch})", "",
             f"Run {args.date}. Search data of workload {args.workload} (examples/digits_nas.py {data_args}), "
             f"Adam at batch {args.batch} (lr 1e-3 x sqrt({args.batch}/16)), seed {args.seed}, {args.draws} draws per "
             "measurement. phi = tr(Sigma) / |g|^2. Command: `" + command(args) + "`", "",
             "| when | step | true \\|g\\|^2 | probe \\|g\\|^2 | true tr(Sigma) | probe tr(Sigma) | true phi | probe phi "
             "| Adam-weighted: true phi | probe phi | running estimate phi | pairs: running estimate phi |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        raw, adam = r["raw"], r["adam"]
        lines.append(f"| {r['when']} | {r['step']} | {raw['true_sqr']:.3g} | {raw['probe_sqr']:.3g} | {raw['true_var']:.3g} | "
                     f"{raw['probe_var']:.3g} | {raw['true_phi']:.0f} | {raw['probe_phi']:.0f} | {adam['true_phi']:.0f} | "
                     f"{adam['probe_phi']:.0f} | {r['running_phi']:.0f} | {r['pairs_phi']:.0f} |")  # fmt: skip
    later = [r for r in rows if r["when"].startswith("epoch") and r["when"] != "epoch 1"] or rows  # after the first epoch
    ratio_of_means = {k: statistics.fmean(r[k]["true_var"] for r in later) / statistics.fmean(r[k]["true_sqr"] for r in later)
                      for k in KINDS}  # fmt: skip
    final = rows[-1]["running_phi"]
    effs = {
        "true (raw), ratio of means": ratio_of_means["raw"],
        "true (Adam-weighted), ratio of means": ratio_of_means["adam"],
        "running estimate at the end": final,
        "pairs: running estimate at the end": rows[-1]["pairs_phi"],
    }
    lines += ["", "## Efficiency each implies relative to batch 16 (the goodput model's (phi + 16) / (phi + B))", "",
              "| noise scale | phi | batch 256 | batch 512 |", "|---|---:|---:|---:|"]  # fmt: skip
    for label, phi in effs.items():
        lines.append(f"| {label} | {phi:.0f} | {efficiency(phi, 256):.2f} | {efficiency(phi, 512):.2f} |")
    lines += ["", "Running estimate: fed the split probe's measurement every 4th step (noise_probe='split'); pairs: fed "
              "the default probe's, every 4th step and the one after it, across the optimizer's update between them.",
              "Ratio of means: over the measurements after the first epoch. The fixed runs of the search measured "
              f"the efficiency itself (epochs to target, `results/{search_results(args.workload)}.md`).", ""]  # fmt: skip
    data = {"date": args.date, "command": command(args), "trial": args.trial, "batch": args.batch, "seed": args.seed,
            "draws": args.draws, "rows": rows, "phi": effs,
            "efficiency": {k: {"256": efficiency(v, 256), "512": efficiency(v, 512)} for k, v in effs.items()}}  # fmt: skip
    return data, "\n".join(lines)


def command(args: argparse.Namespace) -> str:
    return (f"nice -n 10 .venv/bin/python benchmarks/noise_probe.py --workload {args.workload} --trial {args.trial} "
            f"--batch {args.batch} --epochs {args.epochs} --draws {args.draws} --seed {args.seed}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=tuple(WORKLOADS), default="fixed-step", help="the search workload's data")
    parser.add_argument("--trial", default="c8-d2", help="cC-dD: channels and depth")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--draws", type=int, default=96, help="gradients per measurement of the truth and of the probe")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.batch < 4 or args.batch % 2 or args.epochs < 1 or args.draws < 2:
        parser.error(f"need an even --batch >= 4, --epochs >= 1, --draws >= 2 (got {args.batch}, {args.epochs}, {args.draws})")
    try:
        trial_shape(args.trial)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(1)
    args.date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    data, table = summarise(train(Task(args), args), args)
    write_results("noise_probe" + ("" if args.workload == "fixed-step" else f"-{args.workload}"), data, table)


if __name__ == "__main__":
    main()
