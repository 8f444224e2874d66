"""The shared image directory (``HPCSCHED_IMAGE_DIR``, on the shared file system): its layout and
the manifest that names each archive's image and id. Pure, except reading a manifest.

    <dir>/archives/<slug>.tar[.gz]   podman save of the image (docker-archive)
    <dir>/archives/<slug>.json       {"image", "id", "archive", "bytes", "compressed", ...}
    <dir>/store/                     a read-only additional image store (overlay)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from hpcsched.errors import ValidationError

IMAGE_DIR_ENV = "HPCSCHED_IMAGE_DIR"
HOWS = ("archive", "store")


@dataclass(frozen=True)
class Manifest:
    """What ``hpcsched image push`` wrote: the image, its id, and the archive holding it."""

    image: str
    id: str
    archive: str  # file name, in the same directory as the manifest
    bytes: int
    compressed: bool
    pushed_at: float
    pushed_by: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def image_dir(env: Mapping[str, str], given: str = "") -> str:
    """The shared image directory: ``given``, else :data:`IMAGE_DIR_ENV`; an absolute path."""
    path = given or env.get(IMAGE_DIR_ENV, "")
    if not path:
        raise ValidationError("--dir", f"no shared image directory: pass --dir or set image_dir ({IMAGE_DIR_ENV}, "
                              "or image_dir in your or the site's config file) to a directory on the shared file "
                              "system that every compute node sees")
    if not os.path.isabs(path):
        raise ValidationError("--dir", f"{path!r} is not an absolute path")
    return path


def slug(image: str) -> str:
    """A file name for an image reference: ``localhost/hpcsched-train:latest`` ->
    ``localhost_hpcsched-train_latest``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", image).strip("._") or "image"


def archives_dir(directory: str) -> str:
    return os.path.join(directory, "archives")


def store_dir(directory: str) -> str:
    return os.path.join(directory, "store")


def manifest_path(directory: str, image: str) -> str:
    return os.path.join(archives_dir(directory), slug(image) + ".json")


def archive_path(directory: str, image: str, compressed: bool) -> str:
    return os.path.join(archives_dir(directory), slug(image) + (".tar.gz" if compressed else ".tar"))


def parse_manifest(text: str, where: str) -> Manifest:
    """A manifest from its JSON text; ``where`` names the file in the error."""
    try:
        raw = json.loads(text)
        return Manifest(image=str(raw["image"]), id=str(raw["id"]), archive=str(raw["archive"]),
                        bytes=int(raw["bytes"]), compressed=bool(raw["compressed"]),
                        pushed_at=float(raw["pushed_at"]), pushed_by=str(raw["pushed_by"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ValidationError(where, f"not an image manifest written by hpcsched image push ({e})") from None


def read_manifest(directory: str, image: str) -> Manifest | None:
    """The manifest of ``image`` in ``directory``, or None when it has no archive there."""
    path = manifest_path(directory, image)
    try:
        with open(path, encoding="utf-8") as f:
            return parse_manifest(f.read(), path)
    except FileNotFoundError:
        return None


def all_manifests(directory: str) -> list[Manifest]:
    found = []
    try:
        names = sorted(os.listdir(archives_dir(directory)))
    except FileNotFoundError:
        return []
    for name in names:
        if name.endswith(".json"):
            path = os.path.join(archives_dir(directory), name)
            with open(path, encoding="utf-8") as f:
                found.append(parse_manifest(f.read(), path))
    return found
