"""Where the configuration files are, and reading them (the thin shell around :mod:`.layers`).

A missing file is fine (nothing set there); a file that exists but cannot be read or parsed is an
error naming the file and the problem.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from hpcsched.errors import ValidationError
from hpcsched.settings.layers import FileLayer

SITE_FILE = "/etc/hpcsched/config.toml"
SITE_FILE_ENV = "HPCSCHED_SITE_CONFIG"


def site_path(env: Mapping[str, str]) -> str:
    return env.get(SITE_FILE_ENV) or SITE_FILE


def user_path(env: Mapping[str, str]) -> str:
    """``$XDG_CONFIG_HOME/hpcsched/config.toml``; a relative or empty XDG_CONFIG_HOME is ignored,
    as the XDG base directory specification says, for ``~/.config``."""
    base = env.get("XDG_CONFIG_HOME", "")
    if not base.startswith("/"):
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, "hpcsched", "config.toml")


def read_layers(env: Mapping[str, str]) -> list[FileLayer]:
    """The site file and the user's file that exist, site first."""
    layers = []
    for path, site in ((site_path(env), True), (user_path(env), False)):
        data = read_toml(path)
        if data is not None:
            layers.append(FileLayer(path, data, site))
    return layers


def read_toml(path: str) -> dict[str, Any] | None:
    """The parsed file, or None when there is none."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ValidationError(path, f"cannot read the configuration file: {e.strerror or e}") from None
    return parse_toml(path, raw)


def parse_toml(path: str, raw: bytes) -> dict[str, Any]:
    if sys.version_info < (3, 11):  # pragma: no cover - the supported interpreters have tomllib
        raise ValidationError(path, "reading configuration files needs Python 3.11 or newer")
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValidationError(path, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ValidationError(path, f"not valid TOML: {e}") from None
