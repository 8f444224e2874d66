"""One trial of a small neural architecture search: a CNN on scikit-learn's digits, shaped by its arguments.

`hpcsched sweep run` submits one job per point of the search (see docs/sweep.md), e.g.

    hpcsched sweep run examples/digits_nas.py --name nas --grid channels=8,16,32 --grid depth=1,2 \\
        -- --epochs 30 --adaptive

With `--adaptive` the runtime library picks the batch size, gradient accumulation and learning-rate
scaling for goodput as the trial runs (docs/models.md); without it the batch stays `--batch-size`
per rank. `--image-size`, `--augment` and `--noise` make the task harder and each trial longer
(upsampled images, shifted noisy copies of the training and of the validation set, drawn from
``--seed``). After each epoch rank 0 prints "epoch=E step=S batch=B val_acc=0.xxx" and logs val_acc
as a metric (`hpcsched sweep status` shows it); at the end "final val_acc=0.xxx".
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from digits_cnn import accuracy, digits
from torch import nn
from torch.utils.data import TensorDataset

from hpcsched.runtime import AdaptiveBatch, ElasticTrainer


def make_model(channels: int, depth: int, width: int, kernel: int, image_size: int = 8) -> nn.Module:
    """``depth`` conv blocks (channels doubling, 2x2 pooling after each of the first two),
    then a hidden layer of ``width`` units."""
    layers: list[nn.Module] = []
    size, before, after = image_size, 1, channels
    for block in range(depth):
        layers += [nn.Conv2d(before, after, kernel, padding=kernel // 2), nn.ReLU()]
        if block < 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        before, after = after, after * 2
    layers += [nn.Flatten(), nn.Linear(before * size * size, width), nn.ReLU(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


def harder(dataset: TensorDataset, size: int, copies: int, noise: float, generator: torch.Generator) -> TensorDataset:
    """``copies`` copies of ``dataset``, images upsampled to ``size`` x ``size``, each image of a copy
    shifted at random by up to an eighth of its size (when more than one copy), plus Gaussian pixel
    noise of deviation ``noise``."""
    images, labels = dataset.tensors
    images = images.repeat(copies, 1, 1, 1)
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    if copies > 1:  # translations in [-1/8, 1/8] of the image (normalised coordinates span 2)
        theta = torch.zeros(len(images), 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, :, 2] = (torch.rand(len(images), 2, generator=generator) - 0.5) * 0.5
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, align_corners=False)
    if noise > 0:
        images = images + noise * torch.randn(images.shape, generator=generator)
    return TensorDataset(images, labels.repeat(copies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16, help="channels of the first conv block")
    parser.add_argument("--depth", type=int, default=2, choices=(1, 2, 3), help="conv blocks")
    parser.add_argument("--width", type=int, default=64, help="hidden units of the classifier")
    parser.add_argument("--kernel", type=int, default=3, choices=(3, 5), help="conv kernel size")
    parser.add_argument("--image-size", type=int, default=8, help="upsample the 8x8 images to this size")
    parser.add_argument("--augment", type=int, default=1, help="shifted copies of each training and validation image")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian pixel noise on training and validation images")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16, help="per rank (the starting batch when adaptive)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate at the starting batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adaptive", action="store_true", help="adapt batch size, accumulation and learning rate")
    parser.add_argument("--max-batch-size", type=int, default=512, help="largest global batch when adaptive")
    parser.add_argument("--efficiency", choices=("sgd", "sqrt"), default="sgd",
                        help="form of statistical efficiency when adaptive (sqrt: for Adam, docs/adaptive.md)")
    parser.add_argument("--noise-probe", choices=("pairs", "split"), default="pairs",
                        help="how the adaptive mode measures gradient noise in one process (docs/adaptive.md)")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps")
    parser.add_argument(
        "--step-delay",
        type=float,
        default=0.0,
        help="seconds added to each step, to stand in for a bigger model in demos and tests",
    )
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.manual_seed(args.seed)
    if args.image_size < 8 or args.augment < 1 or args.noise < 0:
        parser.error(f"need --image-size >= 8, --augment >= 1, --noise >= 0 (got {args.image_size}, "
                     f"{args.augment}, {args.noise})")  # fmt: skip
    train, val = digits(args.seed)
    if (args.image_size, args.augment, args.noise) != (8, 1, 0.0):
        generator = torch.Generator().manual_seed(args.seed)
        train = harder(train, args.image_size, args.augment, args.noise, generator)
        val = harder(val, args.image_size, args.augment, args.noise, generator)
    model = make_model(args.channels, args.depth, args.width, args.kernel, args.image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    adaptive = None
    if args.adaptive:
        adaptive = AdaptiveBatch(max_batch_size=args.max_batch_size, efficiency=args.efficiency, noise_probe=args.noise_probe)
    trainer = ElasticTrainer(model, optimizer, checkpoint_every=args.checkpoint_every, adaptive=adaptive)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in trainer.epochs(args.epochs):
        for images, labels in trainer.batches(train, batch_size=args.batch_size, seed=args.seed):
            trainer.train_step(loss_fn(trainer.model(images.to(trainer.device)), labels.to(trainer.device)))
            if args.step_delay > 0:  # after every micro-batch: a bigger model pays it on each forward/backward
                time.sleep(args.step_delay)
        if trainer.is_main:
            val_acc = accuracy(trainer.module, val)
            trainer.log_metrics(val_acc=val_acc)
            batch = trainer.progress.global_batch
            print(f"epoch={epoch} step={trainer.global_step} batch={batch} val_acc={val_acc:.3f}", flush=True)
    trainer.finish()
    if trainer.is_main:
        print(f"final val_acc={accuracy(trainer.module, val):.3f}", flush=True)


if __name__ == "__main__":
    main()
