"""One line of the doctor's checklist."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Finding:
    """A check's verdict: what was found, and when it is not ok, how to fix it."""

    name: str
    status: Status
    found: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(name: str, found: str) -> Finding:
    return Finding(name, "ok", found)


def warn(name: str, found: str, fix: str) -> Finding:
    return Finding(name, "warn", found, fix)


def fail(name: str, found: str, fix: str) -> Finding:
    return Finding(name, "fail", found, fix)


def skip(name: str, why: str) -> Finding:
    return Finding(name, "skip", why)


def exit_status(findings: Sequence[Finding]) -> int:
    """0 when nothing failed (warnings and skipped checks included), else 1."""
    return 1 if any(f.status == "fail" for f in findings) else 0
