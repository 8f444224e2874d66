"""The error types users see. Each carries a message that names what was wrong."""

from __future__ import annotations


class HpcschedError(Exception):
    """Base class: an error with a message meant for the user."""


class ValidationError(HpcschedError):
    """A request field is invalid. ``field`` names the option as the user typed it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DaemonNotRunning(HpcschedError):
    """No daemon answers on the socket (and none could be started)."""


class DaemonError(HpcschedError):
    """The daemon answered with an error."""


class AccessDenied(HpcschedError):
    """The caller may not act on this job."""


class JobNotFound(HpcschedError):
    """No job with this id in the store."""
