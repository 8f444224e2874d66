"""``hpcsched completion SHELL``: print the shell completion script for bash, zsh or fish.

The script is click's own: it calls ``hpcsched`` back with ``_HPCSCHED_COMPLETE`` set, so the
completions always follow the installed commands and options (docs/completion.md).
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

HELP = {"help_option_names": ["-h", "--help"]}
SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_HPCSCHED_COMPLETE"

EPILOG = """\b
Examples:
  # bash: for this shell, then for every new one
  eval "$(hpcsched completion bash)"
  hpcsched completion bash > ~/.local/share/bash-completion/completions/hpcsched
  # zsh (a directory on $fpath) and fish
  hpcsched completion zsh > ~/.zfunc/_hpcsched
  hpcsched completion fish > ~/.config/fish/completions/hpcsched.fish
"""


def completion_script(shell: str) -> str:
    """The completion script click writes for SHELL, for the ``hpcsched`` command."""
    from hpcsched.cli.main import cli

    completer = get_completion_class(shell)
    assert completer is not None, shell  # SHELLS are click's built-in shells
    return completer(cli, {}, "hpcsched", COMPLETE_VAR).source()


@click.command(context_settings=HELP, epilog=EPILOG)
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
def completion(shell: str) -> None:
    """Print the completion script of SHELL (bash, zsh or fish) for hpcsched's commands and options."""
    click.echo(completion_script(shell), nl=False)
