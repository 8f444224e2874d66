"""A small CNN on scikit-learn's digits (8x8 images), as an ordinary DDP script.

It does not import hpcsched: hpcsched runs any torchrun script (it just cannot resize this one,
which has no checkpoints). digits_cnn.py is the same training made resizable. Run it with

    hpcsched run examples/plain_ddp.py --nodes 2 -- --epochs 20
    torchrun --nproc-per-node 2 examples/plain_ddp.py
    python examples/plain_ddp.py

Rank 0 prints "epoch=E step=S val_acc=0.xxx" after each epoch and "final val_acc=0.xxx" at the end.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


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
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.manual_seed(args.seed)
    train, val = digits(args.seed)
    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    ddp_model = DistributedDataParallel(model) if distributed else model
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        train, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed
    )
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for images, labels in loader:
            loss = loss_fn(ddp_model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        scheduler.step()
        if rank == 0:
            print(f"epoch={epoch} step={step} val_acc={accuracy(model, val):.3f}", flush=True)
    if distributed:
        dist.destroy_process_group()
    if rank == 0:
        print(f"final val_acc={accuracy(model, val):.3f}", flush=True)


if __name__ == "__main__":
    main()
