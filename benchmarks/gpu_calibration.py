"""Benchmark: the step-time model calibrated on a real GPU, and its error on held-out batch sizes.

Two steps, because the GPU and this project's environment need not be on the same machine:

    # on a machine with a CUDA GPU (needs only torch):
    python benchmarks/gpu_calibration.py measure --out benchmarks/results/gpu_calibration_raw.json
    # anywhere with the project installed (fits with hpcsched.models, writes the tables):
    .venv/bin/python benchmarks/gpu_calibration.py fit benchmarks/results/gpu_calibration_raw.json

measure: real CNNs, one GPU, one process, synthetic data already on the GPU (so the time is the
training step, not a data loader): a CIFAR-style ResNet-18 on 3x32x32 images and a ResNet-50-style
bottleneck network on 3x64x64 images, both 10 classes, SGD with momentum, fp32 (TF32 matmuls and
convolutions allowed, as PyTorch's defaults on a recent GPU). For every local batch size (and, at
two of them, 1 and 3 extra gradient-accumulation micro-steps) it times --steps optimizer steps
after --warmup untimed ones (cuDNN autotuning happens there), synchronising the GPU around each;
the step time is the mean, as the runtime reports it. The micro-step's compute alone (forward and
backward, no optimizer step) is timed the same way. The whole set runs --repeats times, every
other repeat in reverse order.

fit: per model, the throughput model of hpcsched.models fitted on some configurations and used to
predict the others; error = predicted / measured - 1, MAPE = mean |error| over the held-out ones:

* leave one out: each configuration predicted by a fit on all the others;
* larger batches: fit on local batches up to 128 without accumulation, predict the rest (larger
  batches, and every accumulation configuration);
* in-sample: the floor the model's form allows on this data.

One GPU says nothing about the all-reduce terms: those come from the Pollux profiles
(benchmarks/model_accuracy.py) and from multi-node runs (benchmarks/model_accuracy_local.py).
Writes benchmarks/results/gpu_calibration.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

MODELS = {"resnet18-32px": (32, (2, 2, 2, 2), False), "resnet50-64px": (64, (3, 4, 6, 3), True)}
BATCHES = {"resnet18-32px": (16, 32, 64, 128, 256, 512, 1024), "resnet50-64px": (8, 16, 32, 64, 128, 256, 512)}
ACCUM_AT = {"resnet18-32px": (64, 256), "resnet50-64px": (32, 128)}
FIT_UP_TO = {"resnet18-32px": 128, "resnet50-64px": 64}
TARGET = 0.10
Key = tuple[int, int]  # (local batch, extra accumulation micro-steps)


# --- measure (torch only; runs on the GPU machine) ---


def make_resnet(blocks: Sequence[int], bottleneck: bool) -> Any:
    """A ResNet for small images: 3x3 stem, four stages of basic or bottleneck blocks, 10 classes."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            cout = width * (4 if bottleneck else 1)
            if bottleneck:
                layers = [nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                          nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                          nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)]  # fmt: skip
            else:
                layers = [nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                          nn.Conv2d(width, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)]  # fmt: skip
            self.body = nn.Sequential(*layers)
            self.skip = (
                nn.Identity() if stride == 1 and cin == cout
                else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            )  # fmt: skip
            self.out_channels = cout

        def forward(self, x: Any) -> Any:
            return (self.body(x) + self.skip(x)).relu()

    stages: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    cin = 64
    for stage, count in enumerate(blocks):
        for i in range(count):
            block = Block(cin, 64 * 2**stage, 2 if i == 0 and stage > 0 else 1)
            stages.append(block)
            cin = block.out_channels
    return nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def time_config(name: str, batch: int, accum: int, args: argparse.Namespace) -> dict[str, Any]:
    """Mean time of one optimizer step (1 + accum micro-steps) and of one compute-only micro-step."""
    import torch
    from torch import nn

    size, blocks, bottleneck = MODELS[name]
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = make_resnet(blocks, bottleneck).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def micro() -> None:
        loss_fn(model(x), y).backward()

    def step() -> None:
        for _ in range(accum + 1):
            micro()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def timed(fn: Callable[[], None], count: int) -> list[float]:
        times = []
        for _ in range(count):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
        return times

    for _ in range(args.warmup):
        step()
    steps = timed(step, args.steps)
    micros = timed(micro, args.steps)
    opt.zero_grad(set_to_none=True)
    return {
        "model": name, "local_bsz": batch, "accum_steps": accum,
        "step_time": statistics.mean(steps), "step_time_median": statistics.median(steps),
        "compute_time": statistics.mean(micros), "steps": len(steps),
    }  # fmt: skip


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace) -> None:
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    configs = [(m, b, 0) for m in args.models for b in BATCHES[m]]
    configs += [(m, b, a) for m in args.models for b in ACCUM_AT[m] for a in (1, 3)]
    runs = []
    for repeat in range(args.repeats):
        for model, batch, accum in configs if repeat % 2 == 0 else list(reversed(configs)):
            run = time_config(model, batch, accum, args) | {"repeat": repeat}
            runs.append(run)
            print(json.dumps(run), flush=True)
            Path(args.out).write_text(json.dumps(environment(args) | {"runs": runs}, indent=1) + "\n")


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"device": gpu or platform.processor() or "cpu", "torch": torch.__version__, "python": platform.python_version(),
            "warmup": args.warmup, "steps_per_config": args.steps, "repeats": args.repeats}  # fmt: skip


# --- fit (pure, with hpcsched.models) ---


def observations(runs: Sequence[Mapping[str, Any]], model: str) -> dict[Key, Any]:
    """One observation per configuration of ``model``: the median over repeats of the mean step time."""
    from hpcsched.models import Observation

    by_key: dict[Key, list[Mapping[str, Any]]] = {}
    for run in runs:
        if run["model"] == model:
            by_key.setdefault((run["local_bsz"], run["accum_steps"]), []).append(run)
    return {
        key: Observation(
            num_nodes=1,
            num_replicas=1,
            local_bsz=key[0],
            accum_steps=key[1],
            step_time=statistics.median(r["step_time"] for r in rs),
            compute_time=statistics.median(r["compute_time"] for r in rs),
        )
        for key, rs in sorted(by_key.items())
    }


def splits(obs: Mapping[Key, Any], fit_up_to: int) -> dict[str, dict[Key, float]]:
    from accuracy import fit_on, in_sample, leave_one_out

    def small(key: Key) -> bool:
        return key[1] == 0 and key[0] <= fit_up_to

    return {"leave one out": leave_one_out(obs), "larger batches": fit_on(obs, small), "in-sample": in_sample(obs)}


def fit_report(args: argparse.Namespace) -> None:
    from accuracy import mape
    from common import write_results

    from hpcsched.models import fit

    raw = json.loads(Path(args.raw).read_text())
    models = sorted({r["model"] for r in raw["runs"]})
    data: dict[str, Any] = {"environment": {k: v for k, v in raw.items() if k != "runs"}, "models": {}}
    lines = ["# Step-time model calibrated on a real GPU", "",
             f"{raw['device']}, torch {raw['torch']}; one GPU, one process, synthetic data on the GPU, fp32 (TF32 allowed); "
             f"{raw['steps_per_config']} timed steps per configuration after {raw['warmup']} warm-up steps, "
             f"{raw['repeats']} repeats "
             "(median of the per-repeat means). Error = predicted / measured - 1 on configurations the fit did not see "
             "(benchmarks/gpu_calibration.py has the splits).", ""]  # fmt: skip
    for model in models:
        obs = observations(raw["runs"], model)
        preds = splits(obs, FIT_UP_TO[model])
        mapes = {name: mape(p, obs) or 0.0 for name, p in preds.items()}
        params = fit(list(obs.values()))
        data["models"][model] = {
            "mape": mapes, "params": vars(params),
            "configs": [{"local_bsz": k[0], "accum_steps": k[1], "measured": o.step_time, "compute": o.compute_time}
                        | {name: p.get(k) for name, p in preds.items()} for k, o in obs.items()],
        }  # fmt: skip
        lines += [f"## {model} (fit on local batches up to {FIT_UP_TO[model]} for 'larger batches')", "",
                  "| split | MAPE | target <= 10% |", "|---|---:|---|"]  # fmt: skip
        lines += [f"| {n} | {m:.1%} | {'met' if m <= TARGET else 'NOT met'} |" for n, m in mapes.items() if n != "in-sample"]
        lines += [f"| in-sample (the floor) | {mapes['in-sample']:.1%} | (for information) |", "",
                  f"Fitted on all: alpha_c {params.alpha_c * 1e3:.2f} ms, beta_c {params.beta_c * 1e3:.4f} ms/sample.", "",
                  "| local batch | accum | measured ms | leave-one-out ms | error | larger-batches ms | error |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for k, o in obs.items():
            cells = [f"{k[0]}", f"{k[1]}", f"{o.step_time * 1e3:.2f}"]
            for name in ("leave one out", "larger batches"):
                p = preds[name].get(k)
                cells += [f"{p * 1e3:.2f}", f"{p / o.step_time - 1:+.1%}"] if p is not None else ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Reproduce: `python benchmarks/gpu_calibration.py measure` on the GPU machine, then "
                 "`.venv/bin/python benchmarks/gpu_calibration.py fit benchmarks/results/gpu_calibration_raw.json`.")  # fmt: skip
    write_results("gpu_calibration", data, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="time the CNNs on the GPU (needs only torch)")
    m.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "gpu_calibration_raw.json"))
    m.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    m.add_argument("--device", default="cuda")
    m.add_argument("--warmup", type=int, default=8)
    m.add_argument("--steps", type=int, default=30)
    m.add_argument("--repeats", type=int, default=3)
    f = sub.add_parser("fit", help="fit the model to measured step times and write the tables")
    f.add_argument("raw")
    args = parser.parse_args()
    measure(args) if args.command == "measure" else fit_report(args)


if __name__ == "__main__":
    main()
