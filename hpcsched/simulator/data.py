"""Where the Pollux data lives, and which file a workload name means.

The data (per-model profiles under ``traces/``, the workloads, the Philly trace) ships inside the
package in ``hpcsched/data/pollux/`` with its README and licence, so an installed hpcsched needs
nothing beside it. ``$HPCSCHED_POLLUX_DATA`` (or the CLI's ``--data``) names another copy with
the same layout.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .applications import Application, load_applications
from .workload import WorkloadError

PACKAGED_DATA = Path(__file__).resolve().parent.parent / "data" / "pollux"
# The package ships the trace compressed; a copy of the artifact's folder has it plain.
PHILLY_FILES = ("traces/philly.csv.gz", "traces/philly.csv")
ONE_X_FOLDER = "workloads"


def data_dir() -> Path:
    """``$HPCSCHED_POLLUX_DATA`` when set, else the data shipped with the package."""
    return Path(os.environ.get("HPCSCHED_POLLUX_DATA") or PACKAGED_DATA)


@functools.lru_cache(maxsize=4)
def _load(traces: Path) -> dict[str, Application]:
    return load_applications(traces)


def default_applications(root: Path | None = None) -> dict[str, Application]:
    """The six applications, fitted once per process (about 0.3 s)."""
    traces = (root or data_dir()) / "traces"
    if not traces.is_dir():
        raise FileNotFoundError(
            f"no Pollux profiles at {traces}: point --data or $HPCSCHED_POLLUX_DATA at a copy of the "
            "Pollux data, or leave both unset for the copy shipped with hpcsched"
        )
    return _load(traces)


def _workload_name(path: Path) -> str:
    folder = path.parent.name
    return path.stem if folder == ONE_X_FOLDER else f"{folder}/{path.stem}"


def workload_files(root: Path) -> dict[str, Path]:
    """Every workload under ``root`` by name: ``workload-1`` is ``workloads/workload-1.csv``
    (1.0x load), ``workloads-2.0/workload-1`` the file of that folder, ``philly`` the trace."""
    paths = sorted(root.glob("workloads*/*.csv"),
                   key=lambda p: (p.parent.name != ONE_X_FOLDER, p.parent.name, len(p.stem), p.stem))
    files = {_workload_name(p): p for p in paths}
    philly = [root / name for name in PHILLY_FILES if (root / name).is_file()]
    return files | ({"philly": philly[0]} if philly else {})


def _known(files: dict[str, Path]) -> str:
    """The names of ``files``, each folder's run shortened to ``first ... last``."""
    folders: dict[Path, list[str]] = {}
    for name, path in files.items():
        folders.setdefault(path.parent, []).append(name)
    return ", ".join(f"{run[0]} ... {run[-1]}" if len(run) > 2 else ", ".join(run) for run in folders.values())


def resolve_workload(spec: str, root: Path) -> Path:
    """``spec`` itself when it is a file, else the workload of that name under ``root`` (see
    :func:`workload_files`; a ``.csv`` suffix and a ``workloads/`` prefix are accepted)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    files = workload_files(root)
    name = spec.removesuffix(".csv").removeprefix(f"{ONE_X_FOLDER}/")
    if name in files:
        return files[name]
    raise WorkloadError(f"workload {spec!r}: no such file, and no workload of that name in {root} "
                        f"(known: {_known(files) or 'none'})")
