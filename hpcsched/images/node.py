"""The image on one compute node: the launcher's check before ``podman run`` (load the pushed
archive on first use, under a node-local lock, and verify the image id), and the probe that
``hpcsched image check`` runs on every node (``python -m hpcsched.images.node IMAGE``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from hpcsched.errors import ValidationError
from hpcsched.images.podman import Podman, PodmanError, Runner, run_podman
from hpcsched.images.shared import IMAGE_DIR_ENV, Manifest, archives_dir, read_manifest, store_dir
from hpcsched.launcher.storage import node_storage_override, node_storage_paths, podman_storage_args
from hpcsched.settings import effective

LOCK_NAME = "hpcsched-image-load.lock"
Lock = Callable[[str], contextlib.AbstractContextManager[object]]


@contextlib.contextmanager
def node_lock(path: str) -> Iterator[object]:
    """An exclusive lock on a node-local file: one launcher per node loads, the others wait."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


@dataclass(frozen=True)
class NodeImages:
    """Where one node finds images: its Podman storage, the shared directory ("" when none is
    set) and the node-local lock file that serialises loads."""

    node: str
    podman: Podman
    image_dir: str
    lock_path: str
    scratch: str = "/tmp"  # node-local room for an unpacked archive: beside the graph root

    def manifest(self, image: str) -> Manifest | None:
        try:
            return read_manifest(self.image_dir, image) if self.image_dir else None
        except ValidationError:
            return None


def configured_image_dir(env: Mapping[str, str]) -> str:
    """The shared image directory: :data:`IMAGE_DIR_ENV` as the job step got it from the login
    node, else the ``image_dir`` setting of the files this node reads (the site's, the user's);
    "" when none is set or a file is broken (the image check then names the setting)."""
    if env.get(IMAGE_DIR_ENV):
        return env[IMAGE_DIR_ENV]
    try:
        return str(effective(env)["image_dir"].value)
    except ValidationError:
        return ""


def node_images(node: str, env: Mapping[str, str], runner: Runner = run_podman) -> NodeImages:
    """This node's view, from the environment the job step runs in."""
    directory = configured_image_dir(env)
    store = store_dir(directory) if directory and os.path.isdir(store_dir(directory)) else None
    podman = Podman(tuple(podman_storage_args(node_storage_override(node, env), store)), runner)
    paths = node_storage_paths(node, env)
    return NodeImages(node, podman, directory, os.path.join(paths.runroot, LOCK_NAME), os.path.dirname(paths.graphroot))


def missing(image: str, node: str, image_dir: str) -> str:
    where = (f"and {archives_dir(image_dir)} holds no archive of it" if image_dir else
             f"and no shared image directory is set (image_dir: {IMAGE_DIR_ENV} or a config file)")
    return (f"image {image} is not in Podman's storage on {node} {where}: push it from the login node with "
            f"`hpcsched image push {image}` (docs/real-cluster.md), or run the job with an image every node has "
            "(--image; `hpcsched image check` lists the nodes that have it)")


@contextlib.contextmanager
def plain_archive(archive: str, compressed: bool, scratch: str) -> Iterator[str]:
    """The archive as ``podman load`` reads it: Podman 4.3 does not read a gzipped docker-archive,
    so a compressed one is unpacked into node-local scratch space first, and removed after."""
    if not compressed:
        yield archive
        return
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    fd, plain = tempfile.mkstemp(prefix="hpcsched-image-", suffix=".tar", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(archive, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        yield plain
    finally:
        os.unlink(plain)


def load(image: str, manifest: Manifest, where: NodeImages, say: Callable[[str], None]) -> str | None:
    """Load the archive unless another launcher on this node just did; verify the id."""
    archive = os.path.join(archives_dir(where.image_dir), manifest.archive)
    if where.podman.image_id(image) == manifest.id:
        return None
    say(f"loading {image} ({manifest.id[:12]}) from {archive}")
    with plain_archive(archive, manifest.compressed, where.scratch) as plain:
        result = where.podman.try_("load", "--quiet", "--input", plain)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        return f"could not load {archive} on {where.node}: {last}; push it again (`hpcsched image push {image}`)"
    found = where.podman.image_id(image)
    if found != manifest.id:
        return (f"{archive} loaded on {where.node} gives {image} id {(found or 'none')[:12]}, not {manifest.id[:12]} "
                f"as its manifest says: the archive changed after the push; push it again "
                f"(`hpcsched image push {image}`)")
    say(f"loaded {image} ({manifest.id[:12]})")
    return None


def ensure_image(image: str, where: NodeImages, say: Callable[[str], None], lock: Lock = node_lock) -> str | None:
    """Why no container of ``image`` can start on this node, or None once the image is there.
    A pushed archive whose id differs from the node's copy (a newer push) is loaded again."""
    try:
        return present_or_loaded(image, where, say, lock)
    except PodmanError as e:
        return f"Podman on {where.node} cannot look for {image}: {e}"


def present_or_loaded(image: str, where: NodeImages, say: Callable[[str], None], lock: Lock) -> str | None:
    manifest = where.manifest(image)
    have = where.podman.image_id(image)
    if have is not None and (manifest is None or manifest.id == have):
        return None
    if manifest is None:
        return missing(image, where.node, where.image_dir)
    with lock(where.lock_path):
        return load(image, manifest, where, say)


def probe(image: str, where: NodeImages) -> dict[str, object]:
    """What ``hpcsched image check`` judges for this node (nothing is loaded)."""
    manifest = where.manifest(image)
    try:
        found, error = where.podman.image_id(image), ""
    except PodmanError as e:
        found, error = None, str(e)
    return {"node": where.node, "image": image, "id": found, "error": error,
            "archive_id": manifest.id if manifest else None, "image_dir": where.image_dir}


def main(argv: list[str]) -> int:
    node = os.environ.get("SLURMD_NODENAME") or os.uname().nodename
    print(json.dumps(probe(argv[0], node_images(node, os.environ))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
