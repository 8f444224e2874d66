"""Benchmark: checkpoint save and load throughput against the disk's own sequential bandwidth,
measured side by side in one run on the same file system (median of --runs).

- disk write: a file of the checkpoint's size written in 8 MiB chunks, then fsync;
- disk read: the same file read back after dropping the page cache;
- checkpoint save: hpcsched.runtime's CheckpointStore.save of a state of that size (torch.save,
  fsync, manifest with sha256, directory fsync, rename, rotation);
- checkpoint load: load_latest after dropping the page cache (checksum verification + torch.load).
Dropping the page cache needs root (/proc/sys/vm/drop_caches); without it reads come from memory
and the script says so. Target: save and load at >= 50% of the disk's write and read bandwidth.

    .venv/bin/python benchmarks/checkpoint_bandwidth.py [--size-mb 512] [--runs 5] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from common import summary, write_results

from hpcsched.runtime.checkpoint import CheckpointStore

CHUNK = 8 << 20


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def disk_write(path: Path, size: int) -> float:
    block = os.urandom(CHUNK)
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size // CHUNK):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    return size / (time.perf_counter() - start)


def disk_read(path: Path, size: int) -> float:
    drop_caches()
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(CHUNK):
            pass
    return size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    size = a.size_mb << 20
    base = Path(tempfile.mkdtemp(prefix="hpcsched-ckpt-bench-", dir=a.dir))
    state = {"model": {"weight": torch.randn(size // 4)}, "step": torch.tensor(1)}
    store = CheckpointStore(base / "checkpoints", keep_last=2)
    rates: dict[str, list[float]] = {"disk_write": [], "disk_read": [], "save": [], "load": []}
    cache_dropped = drop_caches()
    try:
        for run in range(a.runs):
            rates["disk_write"].append(disk_write(base / "seq.bin", size))
            rates["disk_read"].append(disk_read(base / "seq.bin", size))
            (base / "seq.bin").unlink()
            start = time.perf_counter()
            store.save(run + 1, state, epoch=0, world_size=1)
            rates["save"].append(size / (time.perf_counter() - start))
            drop_caches()
            start = time.perf_counter()
            loaded = store.load_latest()
            rates["load"].append(size / (time.perf_counter() - start))
            assert loaded is not None and torch.equal(loaded.state["model"]["weight"], state["model"]["weight"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {k: summary(v)["median"] / (1 << 20) for k, v in rates.items()}
    table = (
        "# Checkpoint save/load vs disk bandwidth\n\n"
        f"{a.size_mb} MiB state, {a.runs} runs, directory {a.dir}; page cache dropped before reads: {cache_dropped}.\n\n"
        "| operation | median MiB/s | share of disk |\n|---|---|---|\n"
        f"| disk sequential write (fsync) | {med['disk_write']:.0f} | 100% |\n"
        f"| checkpoint save | {med['save']:.0f} | {100 * med['save'] / med['disk_write']:.0f}% |\n"
        f"| disk sequential read | {med['disk_read']:.0f} | 100% |\n"
        f"| checkpoint load (verify + torch.load) | {med['load']:.0f} | {100 * med['load'] / med['disk_read']:.0f}% |\n\n"
        "Target: save and load at >= 50% of the disk's write and read bandwidth.\n"
    )
    write_results("checkpoint_bandwidth", {"size_mb": a.size_mb, "runs": a.runs, "cache_dropped": cache_dropped,
                                           "median_mib_s": med}, table)


if __name__ == "__main__":
    main()
