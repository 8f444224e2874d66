"""``hpcsched config``: the effective settings and where each came from."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.table import Table

from hpcsched import settings as layers
from hpcsched.cli.common import print_json, reports_errors, table_console
from hpcsched.config import caller_environment
from hpcsched.settings.files import site_path, user_path
from hpcsched.settings.schema import BY_NAME

HELP = {"help_option_names": ["-h", "--help"]}

SHOW_EPILOG = """\b
Layers, lowest first (each later one wins):
  default       built into hpcsched
  site file     /etc/hpcsched/config.toml ($HPCSCHED_SITE_CONFIG names another)
  user file     $XDG_CONFIG_HOME/hpcsched/config.toml (default ~/.config/hpcsched/config.toml)
  env VAR       the setting's HPCSCHED_* environment variable
  option        a command's own option, e.g. `hpcsched run --partition`
\b
Exit status: 0, or 2 when a file or variable holds a bad value (the message names the file and
key, or the variable, and the problem). docs/configuration.md lists every setting.
"""


@click.group(context_settings=HELP)
def config() -> None:
    """hpcsched's settings: built-in defaults, the site's file, your file, HPCSCHED_* variables."""


@config.command(epilog=SHOW_EPILOG, context_settings=HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")
@reports_errors
def show(as_json: bool) -> None:
    """Print each setting's effective value and where it came from."""
    env = caller_environment()
    values = layers.effective(env)
    files = {"site": _file(site_path(env)), "user": _file(user_path(env))}
    if as_json:
        print_json({"files": files, "settings": {name: {"value": _plain(e.value), "source": e.source,
                                                         "env": BY_NAME[name].env, "help": BY_NAME[name].help}
                                                  for name, e in values.items()}})
        return
    for kind, info in files.items():
        click.echo(f"{kind} file: {info['path']}{'' if info['found'] else ' (none)'}")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("SETTING", "VALUE", "SOURCE"):
        table.add_column(column)
    for name, e in values.items():
        table.add_row(name, _shown(e.value), e.source)
    table_console().print(table)


def _file(path: str) -> dict[str, Any]:
    return {"path": path, "found": os.path.exists(path)}


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) or "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else "-"
