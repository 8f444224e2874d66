"""Choice of Slurm backend. The Slurm CLI with JSON output works with every Slurm release and is
the default; pyslurm is used only where its version matches the running Slurm's major release
(pyslurm builds against one Slurm major only, and PyPI's pyslurm matches none of the releases
Debian ships)."""

from __future__ import annotations

import importlib
from typing import Any

from hpcsched.slurm.client import SlurmClient


def pyslurm_matches(slurm_version: tuple[int, int, int], pyslurm_version: str) -> bool:
    """pyslurm's version starts with the Slurm major.minor it was built for (e.g. 25.11.0)."""
    parts = pyslurm_version.split(".")
    try:
        return (int(parts[0]), int(parts[1])) == slurm_version[:2]
    except (IndexError, ValueError):
        return False


def load_pyslurm() -> Any | None:
    try:
        return importlib.import_module("pyslurm")
    except ImportError:
        return None


def choose_backend(client: SlurmClient, prefer_pyslurm: bool = False) -> tuple[str, str]:
    """Which backend to use, and why (shown by ``hpcsched daemon status``)."""
    if not prefer_pyslurm:
        return "cli", "Slurm CLI with JSON output (default)"
    module = load_pyslurm()
    if module is None:
        return "cli", "pyslurm is not installed"
    version = str(getattr(module, "__version__", ""))
    slurm = client.version()
    if not pyslurm_matches(slurm, version):
        return "cli", f"pyslurm {version} does not match Slurm {'.'.join(map(str, slurm))}"
    return "pyslurm", f"pyslurm {version} matches Slurm {'.'.join(map(str, slurm))}"
