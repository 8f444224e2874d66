"""Build the training image and put it where every node finds it (the effectful shell of
``hpcsched image build|push|list``; every Podman call goes through an injected :class:`Podman`).

Two ways, measured in benchmarks/image_distribution.py (docs/real-cluster.md):

- ``archive``: ``podman save`` into ``<dir>/archives`` with a manifest naming the image id; each
  node's launcher loads it on first use (:func:`hpcsched.images.node.ensure_image`).
- ``store``: the image loaded into ``<dir>/store``, a read-only additional image store that the
  nodes' storage.conf lists (``additionalimagestores``); nothing is copied to the nodes.
"""

from __future__ import annotations

import getpass
import gzip
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import hpcsched
from hpcsched.errors import HpcschedError
from hpcsched.images.podman import Podman
from hpcsched.images.shared import (
    Manifest,
    all_manifests,
    archive_path,
    archives_dir,
    manifest_path,
    read_manifest,
    store_dir,
)
from hpcsched.images.transfer import Report, copy_reporting, no_report, watching

Clock = Callable[[], float]
# What the Containerfile copies into the image from the installed package.
IMAGE_SOURCES = ("__init__.py", "runtime", "models")


def containerfile() -> Path:
    """The repository's containers/Containerfile (a checkout), else the copy an install puts under
    ``<prefix>/share/hpcsched/containers``."""
    checkout = Path(__file__).resolve().parent.parent.parent / "containers" / "Containerfile"
    return checkout if checkout.is_file() else Path(sys.prefix) / "share" / "hpcsched" / "containers" / "Containerfile"


def build_context(into: Path, source: Path) -> None:
    """The Containerfile and hpcsched's runtime library, as the Containerfile expects them."""
    shutil.copy(source, into / "Containerfile")
    package = Path(hpcsched.__file__).resolve().parent
    (into / "hpcsched").mkdir()
    for name in IMAGE_SOURCES:
        if (package / name).is_dir():
            shutil.copytree(package / name, into / "hpcsched" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(package / name, into / "hpcsched" / name)


def build(podman: Podman, base: str, tag: str, source: Path | None = None) -> str:
    """``podman build`` of the Containerfile on ``base``; returns the new image's id."""
    source = source or containerfile()
    if not source.is_file():
        raise HpcschedError(f"no Containerfile at {source}: pass --containerfile")
    with tempfile.TemporaryDirectory(prefix="hpcsched-build-") as ctx:
        build_context(Path(ctx), source)
        podman("build", "--quiet", "--build-arg", f"BASE_IMAGE={base}", "--tag", tag,
               "--file", os.path.join(ctx, "Containerfile"), ctx)
    return local_id(podman, tag)


def local_id(podman: Podman, image: str) -> str:
    found = podman.image_id(image)
    if found is None:
        raise HpcschedError(f"{image} is not in Podman's storage on this node: build it first "
                            "(`hpcsched image build`) or name one that `podman images` lists")
    return found


def write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def gzip_file(source: str, target: str, stage: str = "compressing", report: Report = no_report) -> None:
    """Level 1: the archive is written once and read by every node, and level 6 costs several
    times the time for a few per cent less."""
    with open(source, "rb") as src, gzip.open(target, "wb", compresslevel=1) as dst:
        copy_reporting(src, dst, stage, os.path.getsize(source), report)


def image_bytes(podman: Podman, image: str) -> int:
    """The image's size as Podman reports it (0 when it does not say): the total a save is
    measured against."""
    text = podman.try_("image", "inspect", "--format", "{{.Size}}", image).stdout.strip()
    return int(text) if text.isdigit() else 0


def push_archive(podman: Podman, image: str, directory: str, compress: bool, clock: Clock,
                 report: Report = no_report) -> Manifest:
    """Save ``image`` into the shared directory, replacing an older push of it; ``report`` hears
    how far the save (and the compression) got."""
    image_id = local_id(podman, image)
    os.makedirs(archives_dir(directory), mode=0o755, exist_ok=True)
    target = archive_path(directory, image, compress)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        with watching(tmp + ".tar", f"saving {image}", image_bytes(podman, image), report):
            podman("save", "--format", "docker-archive", "--output", tmp + ".tar", image)
        if compress:
            gzip_file(tmp + ".tar", tmp, f"compressing {image}", report)
            os.unlink(tmp + ".tar")
        else:
            os.replace(tmp + ".tar", tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp + ".tar"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    other = archive_path(directory, image, not compress)
    if os.path.exists(other):
        os.unlink(other)
    manifest = Manifest(image=image, id=image_id, archive=os.path.basename(target), bytes=os.path.getsize(target),
                        compressed=compress, pushed_at=clock(), pushed_by=getpass.getuser())
    write_atomically(manifest_path(directory, image), json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def private_run_root() -> str:
    """The user's own run root for the shared store on this host's local disk. One path per user,
    not a fresh one: Podman records the run root in the store's database and refuses another."""
    path = os.path.join(tempfile.gettempdir(), f"hpcsched-store-run-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise HpcschedError(f"{path} is not a private directory of yours: remove it and push again") from None
    return path


def store_podman(podman: Podman, directory: str) -> Podman:
    """Podman on the shared store, with the user's private run root on this host's local disk."""
    return replace(podman, global_args=("--root", store_dir(directory), "--runroot", private_run_root()))


def push_store(podman: Podman, image: str, directory: str, clock: Clock, report: Report = no_report) -> Manifest:
    """Load ``image`` into the shared read-only store (through an archive: a pushed one of the same
    id when there is one, else a temporary one that is removed)."""
    image_id = local_id(podman, image)
    pushed = read_manifest(directory, image)
    temporary = pushed is None or pushed.id != image_id
    manifest = push_archive(podman, image, directory, False, clock, report) if temporary else pushed
    assert manifest is not None
    archive = os.path.join(archives_dir(directory), manifest.archive)
    os.makedirs(store_dir(directory), mode=0o755, exist_ok=True)
    try:
        store = store_podman(podman, directory)
        store("load", "--quiet", "--input", archive)
        if store.image_id(image) != image_id:
            raise HpcschedError(f"{image} in {store_dir(directory)} does not have id {image_id[:12]} after the load")
    finally:
        if temporary:
            os.unlink(archive)
            os.unlink(manifest_path(directory, image))
    return replace(manifest, archive="", bytes=tree_bytes(podman, store_dir(directory)))


def tree_bytes(podman: Podman, path: str) -> int:
    """Bytes under ``path`` as the user's namespace sees them (layers belong to subordinate ids)."""
    result = podman.runner(["podman", "unshare", "du", "-sb", path])
    words = result.stdout.split()
    return int(words[0]) if result.returncode == 0 and words and words[0].isdigit() else 0


@dataclass(frozen=True)
class Listed:
    where: str  # "archive", "store" or "node"
    image: str
    id: str
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {"where": self.where, "image": self.image, "id": self.id, "bytes": self.bytes}


def parse_images(text: str, where: str) -> list[Listed]:
    """``podman images --format json``: one row per name (``<none>`` for a dangling image)."""
    rows = []
    for item in json.loads(text or "[]"):
        for name in item.get("Names") or ["<none>"]:
            rows.append(Listed(where, str(name), str(item.get("Id", "")), int(item.get("Size") or 0)))
    return rows


def listing(podman: Podman, directory: str) -> list[Listed]:
    """The shared directory's archives and store (when ``directory`` is set), and this node's images."""
    rows: list[Listed] = []
    if directory:
        rows += [Listed("archive", m.image, m.id, m.bytes) for m in all_manifests(directory)]
        if os.path.isdir(store_dir(directory)):
            rows += parse_images(store_podman(podman, directory)("images", "--format", "json"), "store")
    return rows + parse_images(podman("images", "--format", "json"), "node")
