"""What every command shares: settings, error reporting, JSON output, time formatting."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from hpcsched.config import Settings
from hpcsched.errors import AccessDenied, HpcschedError, ValidationError

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """An error for the user: one line on stderr, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"hpcsched: error: {self.message}", err=True)


class InvalidInput(CliError):
    """A request that names a bad option or file: exit status 2, like a usage error."""

    exit_code = 2


class Denied(CliError):
    """Access denied: exit status 3."""

    exit_code = 3


def reports_errors(func: F) -> F:
    """Turn hpcsched's errors into a one-line message and a non-zero exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ValidationError as e:
            raise InvalidInput(str(e)) from None
        except AccessDenied as e:
            raise Denied(f"access denied: {e}") from None
        except HpcschedError as e:
            raise CliError(str(e)) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    """The effective settings (docs/configuration.md); a bad configuration file or variable is an
    error naming it, exit status 2, whichever command reads them."""
    try:
        return Settings.from_env()
    except ValidationError as e:
        raise InvalidInput(str(e)) from None


def table_console() -> Console:
    """A console for tables: the terminal's width, or wide enough never to cut a cell when the
    output goes to a file or a pipe (rich would otherwise assume 80 columns)."""
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 250)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{s:02d}" if days else f"{hours:02d}:{minutes:02d}:{s:02d}"
