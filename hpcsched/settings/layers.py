"""The effective settings: built-in defaults < site file < user file < environment < options.

Pure functions over what was read (file contents as parsed TOML, the environment, the options);
:mod:`hpcsched.settings.files` reads the files. Every bad value is a
:class:`~hpcsched.errors.ValidationError` that names where it came from (file and key, or the
variable), the setting and the problem.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcsched.errors import ValidationError
from hpcsched.settings.schema import BY_NAME, SETTINGS, Setting, Value

MAX_POLL_INTERVAL = 3600.0
_SWITCH_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class Effective:
    """A setting's value and where it came from ("default", "site file PATH", "env VAR", ...)."""

    value: Value
    source: str


@dataclass(frozen=True)
class FileLayer:
    """One configuration file as parsed TOML (``site`` tells the site file from a user's)."""

    path: str
    data: Mapping[str, Any]
    site: bool

    @property
    def source(self) -> str:
        return f"{'site' if self.site else 'user'} file {self.path}"


def resolve(files: list[FileLayer], env: Mapping[str, str], options: Mapping[str, object] | None = None,
            ) -> dict[str, Effective]:
    """Every setting's effective value; ``files`` in order of precedence (site first), ``env`` the
    environment (its HOME and USER also build the path defaults), ``options`` the command line's
    values by setting name (None or "" means not given)."""
    home = {"HOME": env.get("HOME", "/"), "USER": env.get("USER", "")}
    result = {s.name: Effective(s.default(home), "default") for s in SETTINGS}
    for layer in files:
        result.update(file_values(layer, home))
    result.update(env_values(env, home))
    result.update(option_values(options or {}, home))
    return result


def file_values(layer: FileLayer, home: Mapping[str, str]) -> dict[str, Effective]:
    values = {}
    for key, raw in layer.data.items():
        setting = BY_NAME.get(key)
        where = f"{layer.path}: {key}"
        if setting is None:
            raise ValidationError(where, f"unknown setting (known: {', '.join(BY_NAME)})")
        if not (layer.site or setting.user_file):
            raise ValidationError(where, "only the site's file may set this (the site pins it)")
        values[key] = Effective(typed(setting, raw, where, home), layer.source)
    return values


def env_values(env: Mapping[str, str], home: Mapping[str, str]) -> dict[str, Effective]:
    """The settings the environment sets; an empty variable counts as unset."""
    return {s.name: Effective(from_text(s, env[s.env], s.env, home), f"env {s.env}")
            for s in SETTINGS if env.get(s.env)}


def option_values(options: Mapping[str, object], home: Mapping[str, str]) -> dict[str, Effective]:
    values = {}
    for name, raw in options.items():
        setting = BY_NAME[name]
        if raw is None or raw == "":
            continue
        where = setting.option or name
        value = from_text(setting, raw, where, home) if isinstance(raw, str) else typed(setting, raw, where, home)
        values[name] = Effective(value, f"option {where}")
    return values


def typed(setting: Setting, raw: object, where: str, home: Mapping[str, str]) -> Value:
    """A value from a TOML file (already typed) for ``setting``."""
    if setting.kind == "switch":
        if not isinstance(raw, bool):
            raise ValidationError(where, f"expected true or false, got {raw!r}")
        return raw
    if setting.kind == "seconds":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValidationError(where, f"expected a number of seconds, got {raw!r}")
        return seconds(float(raw), where)
    if setting.kind == "names":
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ValidationError(where, f"expected a list of names such as [\"alice\", \"bob\"], got {raw!r}")
        return names(raw, where)
    if not isinstance(raw, str):
        raise ValidationError(where, f"expected a string, got {raw!r}")
    return text(setting, raw, where, home)


def from_text(setting: Setting, raw: str, where: str, home: Mapping[str, str]) -> Value:
    """A value from an environment variable or an option for ``setting``."""
    if setting.kind == "switch":
        word = _SWITCH_WORDS.get(raw.strip().lower())
        if word is None:
            raise ValidationError(where, f"expected 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
        return word
    if setting.kind == "seconds":
        try:
            return seconds(float(raw), where)
        except ValueError:
            raise ValidationError(where, f"expected a number of seconds, got {raw!r}") from None
    if setting.kind == "names":
        return names([x.strip() for x in raw.split(",") if x.strip()], where)
    return text(setting, raw, where, home)


def seconds(value: float, where: str) -> float:
    if not (math.isfinite(value) and 0 < value <= MAX_POLL_INTERVAL):
        raise ValidationError(where, f"must be more than 0 and at most {MAX_POLL_INTERVAL:.0f} seconds, got {value:g}")
    return value


def names(items: list[str], where: str) -> tuple[str, ...]:
    for name in items:
        if not name or not all(c.isalnum() or c in "._-" for c in name):
            raise ValidationError(where, f"{name!r} is not a user name")
    return tuple(items)


def text(setting: Setting, raw: str, where: str, home: Mapping[str, str]) -> str:
    if setting.kind == "path":
        return path(raw, where, home)
    if raw and setting.check is not None:
        try:
            setting.check(raw)
        except ValidationError as e:
            raise ValidationError(where, problem(e)) from None
    return raw


def path(raw: str, where: str, home: Mapping[str, str]) -> str:
    """``~``, ``$HOME`` and ``$USER`` expanded (a site file names per-user directories with them);
    the result must be absolute. Empty stays empty (not set)."""
    if not raw:
        return raw
    expanded = home["HOME"] + raw[1:] if raw == "~" or raw.startswith("~/") else raw
    try:
        expanded = string.Template(expanded).substitute(home)
    except (KeyError, ValueError):
        raise ValidationError(where, f"{raw!r}: only $HOME and $USER may be used in a path") from None
    if not expanded.startswith("/"):
        raise ValidationError(where, f"{raw!r} is not an absolute path")
    return expanded


def problem(error: ValidationError) -> str:
    """The message of ``error`` without the option name it starts with."""
    return str(error)[len(error.field) + 2:]
