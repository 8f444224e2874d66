"""A small CNN on scikit-learn's digits (8x8 images), made resizable by hpcsched's runtime library.

Compare with plain_ddp.py, the same training as an ordinary DDP script: the difference is the
ElasticTrainer lines (see examples/README.md). Run it with

    hpcsched run examples/digits_cnn.py --nodes 1-2 -- --epochs 20
    torchrun --nproc-per-node 2 examples/digits_cnn.py      # outside hpcsched
    python examples/digits_cnn.py                            # one process, no process group

Rank 0 prints "epoch=E step=S val_acc=0.xxx" after each epoch and "final val_acc=0.xxx" at the end.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from hpcsched.runtime import ElasticTrainer


def digits(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Train and validation sets (80/20, stratified, split by ``seed``), images scaled to [0, 1]."""
    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(data.target, dtype=torch.int64)
    train_idx, val_idx = train_test_split(list(range(len(labels))), test_size=0.2, random_state=seed, stratify=data.target)
    return (TensorDataset(images[train_idx], labels[train_idx]), TensorDataset(images[val_idx], labels[val_idx]))


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip


@torch.no_grad()
def accuracy(model: nn.Module, dataset: TensorDataset) -> float:
    model.eval()
    device = next(model.parameters()).device
    images, labels = (t.to(device) for t in dataset.tensors)
    correct = int((model(images).argmax(dim=1) == labels).sum().item())
    model.train()
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps")
    parser.add_argument("--step-delay", type=float, default=0.0,
                        help="seconds added to each step, to stand in for a bigger model in demos and tests")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.manual_seed(args.seed)
    train, val = digits(args.seed)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    trainer = ElasticTrainer(model, optimizer, scheduler, checkpoint_every=args.checkpoint_every)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in trainer.epochs(args.epochs):
        for images, labels in trainer.batches(train, batch_size=args.batch_size, seed=args.seed):
            loss = loss_fn(trainer.model(images.to(trainer.device)), labels.to(trainer.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if args.step_delay:
                time.sleep(args.step_delay)
            trainer.step(loss=loss.item())
        scheduler.step()
        if trainer.is_main:
            print(f"epoch={epoch} step={trainer.global_step} val_acc={accuracy(trainer.module, val):.3f}", flush=True)
    trainer.finish()
    if trainer.is_main:
        print(f"final val_acc={accuracy(trainer.module, val):.3f}", flush=True)


if __name__ == "__main__":
    main()
