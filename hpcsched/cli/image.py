"""``hpcsched image build|push|list|check``: the training image on every compute node."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TextIO

import click

from hpcsched.cli.common import print_json, reports_errors, settings
from hpcsched.cli.progress import Progress
from hpcsched.images import check as node_check
from hpcsched.images import distribute
from hpcsched.images.podman import Podman
from hpcsched.images.shared import HOWS, IMAGE_DIR_ENV, Manifest, image_dir, store_dir
from hpcsched.images.transfer import progress_text
from hpcsched.slurm.runner import run_slurm

HELP = {"help_option_names": ["-h", "--help"]}
MARKS = {"ok": "ok      ", "loadable": "loadable", "missing": "MISSING ", "skip": "skip    "}
DIR_HELP = f"The shared image directory every compute node sees (default: the image_dir setting, ${IMAGE_DIR_ENV})."
JSON_HELP = "Print the result as JSON."


def this_node() -> Podman:
    """Podman on the login node, with the user's own storage (HPCSCHED_NODE_STORAGE is for
    compute nodes): where `image build` puts the image and `image push` takes it from."""
    return Podman()


def image_argument(given: str | None) -> str:
    return given or settings().image


@click.group(context_settings=HELP)
def image() -> None:
    """Build the training image and get it onto every compute node.

    \b
    hpcsched image build --base <PyTorch image>   build it here from the Containerfile
    hpcsched image push                          put it in the shared image directory
    hpcsched image check                         which nodes of the partition have it
    hpcsched image list                          what the shared directory and this node hold

    The image defaults to the `image` setting. docs/real-cluster.md says which way of pushing
    suits which cluster.
    """


@image.command(context_settings=HELP)
@click.option("--base", required=True, metavar="IMAGE", help="A PyTorch image with python3 and torchrun.")
@click.option("--tag", metavar="IMAGE", help="The name of the built image (default: the image setting).")
@click.option("--containerfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Build this Containerfile instead of hpcsched's own.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@reports_errors
def build(base: str, tag: str | None, containerfile: Path | None, as_json: bool) -> None:
    """Build the training image: hpcsched's runtime library on a PyTorch base."""
    ref = image_argument(tag)
    image_id = distribute.build(this_node(), base, ref, containerfile)
    if as_json:
        print_json({"image": ref, "id": image_id, "base": base})
    else:
        click.echo(f"built {ref} ({image_id[:12]}) on {base}")


@image.command(context_settings=HELP)
@click.argument("name", required=False, metavar="IMAGE")
@click.option("--how", type=click.Choice(HOWS), default="archive", show_default=True,
              help="archive: a file each node loads on first use; store: a read-only image store the nodes' "
                   "storage.conf lists.")
@click.option("--compress", is_flag=True, help="gzip the archive (smaller, slower to write and to load).")
@click.option("--dir", "directory", metavar="DIR", help=DIR_HELP)
@click.option("--quiet", "-q", is_flag=True, help="No progress line (there is none either when stderr is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@reports_errors
def push(name: str | None, how: str, compress: bool, directory: str | None, quiet: bool, as_json: bool) -> None:
    """Make IMAGE (from this node's storage) available to every compute node.

    On a terminal a line on stderr shows how much of the image is saved (and compressed) so far.
    """
    ref, where = image_argument(name), image_dir(os.environ, directory or settings().image_dir)
    started, progress = time.monotonic(), push_progress(quiet or as_json)

    def report(stage: str, done: int, total: int) -> None:
        progress.update(progress_text(stage, done, total))

    try:
        if how == "store":
            manifest = distribute.push_store(this_node(), ref, where, time.time, report)
        else:
            manifest = distribute.push_archive(this_node(), ref, where, compress, time.time, report)
    finally:
        progress.done()
    seconds = time.monotonic() - started
    if as_json:
        print_json({**manifest.to_json(), "how": how, "seconds": round(seconds, 1)})
    else:
        click.echo(pushed_text(manifest, how, where, seconds))


def push_progress(quiet: bool, stream: TextIO | None = None) -> Progress:
    """A progress line on a terminal only: a push is one step, and a log wants its result line."""
    stream = sys.stderr if stream is None else stream
    return Progress(stream, enabled=not quiet and stream.isatty(), tty=True)


def pushed_text(manifest: Manifest, how: str, where: str, seconds: float) -> str:
    size = f"{manifest.bytes / (1 << 30):.2f} GiB"
    if how == "archive":
        return (f"pushed {manifest.image} ({manifest.id[:12]}) to {where}/archives/{manifest.archive} ({size}, "
                f"{seconds:.0f} s); each node loads it when a job first needs it there")
    return (f"pushed {manifest.image} ({manifest.id[:12]}) into the image store {store_dir(where)} ({size}, "
            f"{seconds:.0f} s); the nodes' storage.conf must list it:\n"
            f"  [storage.options]\n  additionalimagestores = [\"{store_dir(where)}\"]")


@image.command(name="list", context_settings=HELP)
@click.option("--dir", "directory", metavar="DIR", help=DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@reports_errors
def list_images(directory: str | None, as_json: bool) -> None:
    """Show the images in the shared image directory and in this node's storage."""
    where = directory or settings().image_dir
    rows = distribute.listing(this_node(), image_dir(os.environ, where) if where else "")
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    click.echo(f"{'WHERE':<8} {'ID':<12} {'SIZE':>9}  IMAGE")
    for row in rows:
        click.echo(f"{row.where:<8} {row.id[:12]:<12} {row.bytes / (1 << 30):>7.2f}Gi  {row.image}")


@image.command(name="check", context_settings=HELP)
@click.argument("name", required=False, metavar="IMAGE")
@click.option("--wait", "wait_s", type=click.IntRange(1, 3600), default=60, show_default=True, metavar="SECONDS",
              help="How long to wait for the nodes to be free for the check's step.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@reports_errors
def check_nodes(name: str | None, wait_s: int, as_json: bool) -> None:
    """Which nodes of the partition have IMAGE, which load it on first use, and which lack it.

    Runs one small step (one task, one core, 256 MiB on each node) with your partition, account
    and qos settings. Exit status 1 when a node lacks the image.
    """
    cfg = settings()
    ref = name or cfg.image
    verdicts = node_check.check(cfg, ref, run_slurm, float(wait_s))
    if as_json:
        print_json([v.to_json() for v in verdicts])
    else:
        for v in verdicts:
            click.echo(f"{MARKS[v.status]}  {v.node:<10} {v.found}" + (f"\n          {'':<10} fix: {v.fix}" if v.fix else ""))
    raise SystemExit(node_check.exit_status(verdicts))
