"""Checkpoints as committed directories with a manifest (design invariant 5, reliability D1–D7).

A checkpoint is the directory ``<dir>/step-<step>`` holding ``state.pt`` (written by torch.save)
and ``manifest.json`` (each file's size and sha256, plus step, epoch, world size, time and the
format version). It is written as ``.tmp-step-<step>-<random>`` in the same parent, every file and
the directory fsynced, then renamed in one step and the parent fsynced — so a write interrupted at
any point (SIGKILL, ENOSPC, a node that dies) leaves either no new checkpoint or a complete one,
and the previous one stays usable. Loading walks from the newest to the oldest and takes the first
whose checksums match and which torch.load accepts with ``weights_only=True``.

A store given the job's identity (store id, job id, submission nonce) writes it into every manifest
and resumes only from checkpoints that carry the same identity (D4): another job's checkpoint — left
in the directory by another run or another store — is ignored with a warning naming it, and is
never deleted (rotation touches only this job's own checkpoints). A checkpoint without an identity
(written by an earlier version) is likewise ignored by a job that has one; a job without an identity
(run outside hpcsched, or submitted by an earlier version) resumes from any valid checkpoint, as
before.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpcsched.runtime.environment import JobIdentity

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PAYLOAD = "state.pt"
TEMP_PREFIX = ".tmp-"
_STEP_DIR = re.compile(r"step-(\d+)")
_CHUNK = 8 << 20


class CheckpointError(Exception):
    """Base of the errors below."""


class CheckpointNotSaved(CheckpointError):
    """A save was aborted (its temporary directory removed); older checkpoints are untouched."""


class CheckpointInvalid(CheckpointError):
    """A committed checkpoint failed verification or loading; the reason is the message."""


class CheckpointForeign(CheckpointError):
    """A committed checkpoint this job did not write (D4); the message says whose it is."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified, loaded checkpoint."""

    step: int
    path: Path
    manifest: dict[str, Any]
    state: dict[str, Any]


def write_payload(path: Path, state: object) -> None:
    """Write ``state`` with torch.save and fsync it (the fault point tests patch)."""
    with open(path, "xb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _not_saved(error: OSError, final: Path) -> CheckpointNotSaved:
    reason = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or str(error)).lower()
    where = f" ({error.filename})" if error.filename else ""
    return CheckpointNotSaved(f"checkpoint not saved: {reason} at {final}{where}; older checkpoints are kept")


class CheckpointStore:
    """The checkpoints of one job in one directory; only rank 0 writes, any rank may read."""

    def __init__(self, directory: Path | str, keep_last: int = 3, identity: JobIdentity | None = None, *,
                 writer: Callable[[Path, object], None] | None = None) -> None:
        """``writer`` writes the payload file (default :func:`write_payload`); a slow one shows
        what a save cut off by the end of the job leaves behind (D6)."""
        if keep_last < 1:
            raise ValueError(f"keep_last must be 1 or more (the newest checkpoint is never deleted), got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.identity = identity
        self.writer = writer

    def path_for(self, step: int) -> Path:
        return self.directory / f"step-{step:010d}"

    def steps(self) -> list[int]:
        """Steps of the committed checkpoint directories, newest first (temporaries are ignored)."""
        return sorted(self._committed(), reverse=True)

    def _committed(self) -> dict[int, Path]:
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:
            return {}
        found = {}
        for entry in entries:
            match = _STEP_DIR.fullmatch(entry.name)
            if match and entry.is_dir():
                found[int(match.group(1))] = entry
        return found

    def save(self, step: int, state: dict[str, Any], *, epoch: int, world_size: int) -> Path:
        """Write, commit and rotate; raises CheckpointNotSaved on any OSError (ENOSPC included)."""
        final = self.path_for(step)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}step-{step}-", dir=self.directory))
        except OSError as error:
            raise _not_saved(error, final) from error
        try:
            (self.writer or write_payload)(tmp / PAYLOAD, state)
            size, sha256 = _digest(tmp / PAYLOAD)
            manifest = {
                "format": FORMAT_VERSION,
                "step": step,
                "epoch": epoch,
                "world_size": world_size,
                "time": time.time(),
                "files": [{"name": PAYLOAD, "size": size, "sha256": sha256}],
                **({"job": self.identity.as_dict()} if self.identity else {}),
            }
            _write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
            _fsync_dir(tmp)
            self._commit(tmp, final)
        except OSError as error:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _not_saved(error, final) from error
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.rotate(newest=step)
        return final

    def _commit(self, tmp: Path, final: Path) -> None:
        """Rename into place; an older checkpoint of the same step (one that failed to load) is
        replaced, and another job's is moved aside (kept, under a name that is no checkpoint's)."""
        replaced = None
        if final.exists() and not self._owns(final):
            aside = final.with_name(f"{final.name}.foreign-{secrets.token_hex(4)}")
            os.rename(final, aside)
            print(f"hpcsched: moved another job's checkpoint {final} aside to {aside}", file=sys.stderr, flush=True)
        elif final.exists():
            replaced = final.with_name(f"{TEMP_PREFIX}replaced-{final.name}-{secrets.token_hex(4)}")
            os.rename(final, replaced)
        os.rename(tmp, final)
        _fsync_dir(final.parent)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)

    def rotate(self, newest: int) -> None:
        """Keep the ``keep_last`` newest checkpoints up to ``newest``; never touch ``newest`` or later ones.

        Later ones can exist only when they failed to load at resume; they are replaced when
        training reaches their step again. Another job's checkpoints are never counted or removed.
        """
        committed = {step: path for step, path in self._committed().items() if self._owns(path)}
        older = sorted((s for s in committed if s <= newest), reverse=True)
        for step in older[self.keep_last :]:
            self._remove(committed[step])

    def _owns(self, path: Path) -> bool:
        """Whether this job wrote the checkpoint at ``path``; one whose manifest cannot be read
        counts as its own only for a store without an identity (as before identities existed)."""
        try:
            return foreign_reason(_read_manifest(path), self.identity) is None
        except CheckpointInvalid:
            return self.identity is None

    def _remove(self, path: Path) -> None:
        # Renamed away first, so a deletion cut short never looks like a committed checkpoint.
        doomed = path.with_name(f"{TEMP_PREFIX}delete-{path.name}-{secrets.token_hex(4)}")
        try:
            os.rename(path, doomed)
        except OSError as error:
            print(f"hpcsched: could not remove old checkpoint {path}: {error}", file=sys.stderr)
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def clean_temporary(self) -> list[Path]:
        """Remove ``.tmp-*`` leftovers of interrupted saves; call only while no save can be running."""
        try:
            leftovers = [p for p in self.directory.iterdir() if p.name.startswith(TEMP_PREFIX)]
        except FileNotFoundError:
            return []
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return leftovers

    def load(self, step: int, *, verify: bool = True, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Load one checkpoint; raises CheckpointInvalid naming the reason, or CheckpointForeign
        when another job wrote it."""
        path = self._committed().get(step, self.path_for(step))
        manifest = _read_manifest(path)
        foreign = foreign_reason(manifest, self.identity)
        if foreign:
            raise CheckpointForeign(foreign)
        # The checksums are verified in a second thread while torch.load reads (hashlib releases
        # the GIL): loading takes about as long as the slower of the two, not their sum. Loading
        # before the verdict is safe because weights_only=True never runs code from the file.
        verdict: list[CheckpointInvalid] = []
        checker = threading.Thread(target=_verify_into, args=(path, manifest, verdict), daemon=True)
        if verify:
            checker.start()
        try:
            state = torch.load(path / PAYLOAD, map_location=map_location, weights_only=True)
        except Exception as error:
            load_error: Exception | None = error
        else:
            load_error = None
        if verify:
            checker.join()
            if verdict:
                raise verdict[0]
        if load_error is not None:
            raise CheckpointInvalid(f"torch.load failed: {load_error}") from load_error
        if not isinstance(state, dict):
            raise CheckpointInvalid(f"{PAYLOAD} holds a {type(state).__name__}, not a dict")
        return Checkpoint(step, path, manifest, state)

    def load_latest(self, map_location: str | torch.device = "cpu") -> Checkpoint | None:
        """The newest checkpoint that verifies and loads; each one skipped is reported on stderr."""
        for step in self.steps():
            try:
                return self.load(step, map_location=map_location)
            except CheckpointInvalid as invalid:
                print(
                    f"hpcsched: checkpoint {self.path_for(step)} is not usable ({invalid}); trying the one before",
                    file=sys.stderr,
                    flush=True,
                )
            except CheckpointForeign as foreign:
                print(f"hpcsched: ignoring checkpoint {self.path_for(step)}: {foreign}; it is neither resumed "
                      "nor deleted", file=sys.stderr, flush=True)
        return None


def foreign_reason(manifest: dict[str, Any], identity: JobIdentity | None) -> str | None:
    """Why a checkpoint with this manifest is not the job's own to resume, or None when it is.
    A job without an identity takes any checkpoint (outside hpcsched, or an earlier version's job)."""
    owner = manifest.get("job")
    if identity is None or owner == identity.as_dict():
        return None
    if not isinstance(owner, dict):
        return "it carries no job identity (written outside hpcsched or by an earlier version), so it cannot be this job's"
    return (f"it belongs to another job (job {owner.get('job_id')} of store {owner.get('store_id')}, "
            f"submission {owner.get('nonce')}), not to job {identity.job_id} of store {identity.store_id}")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise CheckpointInvalid(f"{MANIFEST} is missing") from None
    except (OSError, ValueError) as error:
        raise CheckpointInvalid(f"{MANIFEST} is unreadable: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise CheckpointInvalid(f"{MANIFEST} has no list of files")
    if manifest.get("format") != FORMAT_VERSION:
        raise CheckpointInvalid(f"{MANIFEST} has format {manifest.get('format')!r}, this library reads {FORMAT_VERSION}")
    return manifest


def _verify_into(path: Path, manifest: dict[str, Any], verdict: list[CheckpointInvalid]) -> None:
    try:
        _verify_files(path, manifest)
    except CheckpointInvalid as invalid:
        verdict.append(invalid)


def _verify_files(path: Path, manifest: dict[str, Any]) -> None:
    names = set()
    for entry in manifest["files"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name != Path(name).name or name.startswith("."):
            raise CheckpointInvalid(f"{MANIFEST} lists a bad file name {name!r}")
        names.add(name)
        try:
            size, sha256 = _digest(path / name)
        except OSError as error:
            raise CheckpointInvalid(f"{name} is unreadable: {error}") from error
        if size != entry.get("size"):
            raise CheckpointInvalid(f"{name} has {size} bytes, the manifest says {entry.get('size')} (truncated?)")
        if sha256 != entry.get("sha256"):
            raise CheckpointInvalid(f"{name} fails its sha256 check (corrupted)")
    if PAYLOAD not in names:
        raise CheckpointInvalid(f"{MANIFEST} does not list {PAYLOAD}")
