"""Shell completion: ``hpcsched completion bash|zsh|fish`` prints click's script, and the bash
script, sourced in a real bash, offers the commands and options of the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcsched.cli.main import cli


def bash_completions(words: list[str]) -> list[str]:
    """What bash offers for WORDS (the last one being completed) with the script sourced."""
    hpcsched = Path(sys.executable).parent / "hpcsched"
    assert hpcsched.exists(), "the hpcsched command is installed beside this Python"
    script = CliRunner().invoke(cli, ["completion", "bash"]).stdout
    driver = (
        f'{script}\nCOMP_WORDS=({" ".join(words)}); COMP_CWORD={len(words) - 1}\n'
        '_hpcsched_completion hpcsched\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{hpcsched.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([shutil.which("bash") or "bash", "-c", driver], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.split()


def test_bash_script_completes_a_subcommand() -> None:
    offered = bash_completions(["hpcsched", "r"])
    assert "run" in offered and "resize" in offered
    assert "status" not in offered


def test_bash_script_completes_an_option() -> None:
    assert bash_completions(["hpcsched", "cancel", "--w"]) == ["--wait"]


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete")])
def test_each_shell_gets_its_script(shell: str, marker: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0 and marker in result.stdout and "_HPCSCHED_COMPLETE" in result.stdout


def test_an_unknown_shell_is_refused_naming_it() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr
