"""hpcsched's settings in layers: built-in defaults < site file < user file < environment <
command-line options (docs/configuration.md).

:mod:`.schema` is the one table of settings, :mod:`.layers` resolves the layers (pure),
:mod:`.files` finds and reads the files. :class:`hpcsched.config.Settings` is what the rest of
hpcsched uses.
"""

from __future__ import annotations

from collections.abc import Mapping

from hpcsched.settings.files import read_layers
from hpcsched.settings.layers import Effective, resolve


def effective(env: Mapping[str, str], options: Mapping[str, object] | None = None) -> dict[str, Effective]:
    """Every setting's value and source for a process with environment ``env`` (reads the files)."""
    return resolve(read_layers(env), env, options)


__all__ = ["Effective", "effective"]
