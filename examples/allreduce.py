"""Every rank contributes rank+1 to an all-reduce; each prints the sum and where it ran.

With N ranks the sum is N(N+1)/2. Run it with:  hpcsched run examples/allreduce.py --nodes 2
"""

import os
import socket

import torch
import torch.distributed as dist


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    expected = world * (world + 1) / 2
    node = os.environ.get("SLURMD_NODENAME", socket.gethostname())
    # One write() per line: ranks share the log, and a short single write is never split.
    print(f"allreduce rank={rank} world={world} node={node} sum={value.item():g} expected={expected:g}\n",
          end="", flush=True)
    dist.destroy_process_group()
    if value.item() != expected:
        raise SystemExit(f"rank {rank}: all-reduce gave {value.item()}, expected {expected}")


if __name__ == "__main__":
    main()
