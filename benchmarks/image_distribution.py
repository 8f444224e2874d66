"""Benchmark: getting the training image onto a node, the two ways ``hpcsched image push`` offers.

- archive: ``podman save`` into the shared image directory (plain tar, or gzip level 1 with
  --compress); the launcher loads it into the node's storage on first use (the code the launcher
  runs: hpcsched.images.node.ensure_image) before ``podman run``;
- store: the image loaded into a read-only additional image store in the shared directory; the
  node's Podman lists it (overlay.imagestore) and copies nothing.

For each way: the push once (seconds, bytes in the shared directory), then --runs first uses on a
node with an empty storage root of its own (HPCSCHED_NODE_STORAGE, as the integration tests give
each emulated node): the load, the first ``podman run`` of the image (python3 -c 'import torch'),
a second run on the now warm node, and the node-local bytes used. All as the cluster user, on
this host (the emulated nodes share its disk, so the "shared file system" here is local disk:
a network file system adds its read bandwidth to the load and to the store's first run).
Run as root after `make setup`:  nice -n 10 .venv/bin/python benchmarks/image_distribution.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from common import SITE, as_user, summary, workspace, write_results

IMAGE = "localhost/hpcsched-train:latest"
NODE_ROOT = "/tmp/hpcsched-node-{node}"
WAYS = {"archive": ["--how", "archive"], "archive-gz": ["--how", "archive", "--compress"], "store": ["--how", "store"]}
# Run as the user with the site's Python: the launcher's own first-use path, then two container starts.
NODE_USE = """
import json, os, sys, time, subprocess
from hpcsched.images.node import ensure_image, node_images
image, node = sys.argv[1], sys.argv[2]
where = node_images(node, os.environ)
t0 = time.perf_counter()
problem = ensure_image(image, where, lambda text: None)
t1 = time.perf_counter()
assert problem is None, problem
run = where.podman.argv("run", "--rm", "--network", "host", "--userns", "keep-id", image,
                        "python3", "-c", "import torch")
subprocess.run(run, check=True, capture_output=True)
t2 = time.perf_counter()
subprocess.run(run, check=True, capture_output=True)
t3 = time.perf_counter()
du = subprocess.run(["podman", "unshare", "du", "-sb", os.path.dirname(where.lock_path).rsplit("/", 1)[0]],
                    capture_output=True, text=True)
print(json.dumps({"load_s": t1 - t0, "first_run_s": t2 - t1, "warm_run_s": t3 - t2,
                  "node_bytes": int(du.stdout.split()[0]) if du.returncode == 0 else None}))
"""


def remove(path: Path) -> None:
    """As root: node storage holds files of the user's subordinate ids."""
    subprocess.run(["rm", "-rf", str(path)], check=True)


def one_way(way: str, runs: int, root: Path) -> dict[str, Any]:
    shared = root / "shared" / way
    shared.mkdir(parents=True)
    shutil.chown(shared, *(root.owner(),) * 2)
    # Podman refuses a run root over 50 characters: the node roots stay short.
    env = {"HPCSCHED_IMAGE_DIR": str(shared), "HPCSCHED_NODE_STORAGE": NODE_ROOT}
    hs = [str(SITE / "bin" / "hpcsched")]
    start = time.perf_counter()
    pushed = json.loads(as_user(["env", *(f"{k}={v}" for k, v in env.items()), *hs, "image", "push", "--json",
                                 *WAYS[way]], root).stdout)
    push_s = time.perf_counter() - start
    uses = []
    for run in range(runs):
        node = f"{way}-{run}"
        remove(Path(NODE_ROOT.replace("{node}", node)))
        out = as_user(["env", *(f"{k}={v}" for k, v in env.items()), str(SITE / "bin" / "python"), "-c", NODE_USE,
                       IMAGE, node], root).stdout
        uses.append(json.loads(out.strip().splitlines()[-1]))
    first = [u["load_s"] + u["first_run_s"] for u in uses]
    result = {"push_s": push_s, "shared_bytes": pushed["bytes"], "uses": uses,
              "first_start_s": summary(first), "load_s": summary([u["load_s"] for u in uses]),
              "warm_run_s": summary([u["warm_run_s"] for u in uses]),
              "node_bytes": summary([float(u["node_bytes"] or 0) for u in uses])}
    remove(shared)
    return result


def table(results: dict[str, dict[str, Any]], runs: int) -> str:
    gib = 1 << 30
    lines = [f"# Image distribution ({runs} first uses per way; medians, min-max in brackets)", "",
             "| way | push (s) | shared dir (GiB) | load on node (s) | first container start (s) | warm start (s) "
             "| node-local disk (GiB) |", "|---|---|---|---|---|---|---|"]
    for way, r in results.items():
        f, lo, w, nb = r["first_start_s"], r["load_s"], r["warm_run_s"], r["node_bytes"]
        lines.append(f"| {way} | {r['push_s']:.1f} | {r['shared_bytes'] / gib:.2f} | {lo['median']:.1f} "
                     f"| {f['median']:.1f} [{f['min']:.1f}-{f['max']:.1f}] | {w['median']:.1f} "
                     f"| {nb['median'] / gib:.2f} |")
    lines += ["", "First container start = the launcher's load (none for the store) + the first `podman run` of "
              "the image on a node with empty storage. Shared file system = this host's local disk.",
              f"Host: {platform.node()}, {platform.platform()}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ways", default=",".join(WAYS), help="comma-separated subset of " + ",".join(WAYS))
    args = ap.parse_args()
    root = workspace("image_distribution")
    results: dict[str, dict[str, Any]] = {}
    for way in args.ways.split(","):
        try:
            results[way] = one_way(way, args.runs, root)
        except subprocess.CalledProcessError as e:
            raise SystemExit(f"{way}: {e.cmd[-2:]} failed: {e.stderr}") from None
        write_results("image_distribution", {"image": IMAGE, "runs": args.runs, "results": results},
                      table(results, args.runs))
    # Removing 1.3 GiB of node storage takes minutes on a busy disk: after all the measurements.
    for way in results:
        for run in range(args.runs):
            remove(Path(NODE_ROOT.replace("{node}", f"{way}-{run}")))
    remove(root)


if __name__ == "__main__":
    main()
