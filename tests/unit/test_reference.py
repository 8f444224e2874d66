"""The generated reference (scripts/gen_reference.py): every command, option and setting of the
code has its place in the pages, so the documentation cannot drift from the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import click
import pytest

from hpcsched.cli.main import COMMANDS, cli
from hpcsched.settings.schema import SETTINGS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_reference.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def every_command() -> list[tuple[str, click.Command]]:
    """The click tree, walked here independently of the generator."""
    ctx = click.Context(cli)
    found: list[tuple[str, click.Command]] = [("hpcsched", cli)]
    pending = [(f"hpcsched {name}", cli.get_command(ctx, name)) for name in COMMANDS]
    while pending:
        path, command = pending.pop()
        assert command is not None, path
        found.append((path, command))
        if isinstance(command, click.Group):
            pending += [(f"{path} {name}", sub) for name, sub in command.commands.items()]
    return found


def sections(page: str) -> dict[str, str]:
    """Each '## `command`' section of the commands page by command name."""
    parts = page.split("\n## `")[1:]
    return {part.split("`", 1)[0]: part for part in parts}


@pytest.fixture(scope="module")
def pages(gen: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    docs = tmp_path_factory.mktemp("docs")
    return {path.name: path.read_text() for path in gen.generate(docs)}


def test_every_command_has_its_section(pages: dict[str, str]) -> None:
    documented = sections(pages["commands.md"])
    commands = every_command()
    assert len(commands) > 30 and "hpcsched sweep run" in dict(commands)
    assert sorted(path for path, _ in commands) == sorted(documented)


def test_every_option_is_in_its_commands_section(pages: dict[str, str]) -> None:
    documented = sections(pages["commands.md"])
    missing = [
        f"{path} {opt}"
        for path, command in every_command()
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for opt in (*param.opts, *param.secondary_opts)
        if opt not in documented_options(documented[path])
    ]
    assert missing == []


def documented_options(section: str) -> set[str]:
    """The option names in the first cell of a section's option table: `-N, --nodes TEXT`."""
    cells = [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]
    return {word for cell in cells for word in cell.replace(",", " ").replace("/", " ").split() if word.startswith("-")}


def test_every_argument_is_in_its_usage_line(pages: dict[str, str]) -> None:
    documented = sections(pages["commands.md"])
    for path, command in every_command():
        for param in command.params:
            if isinstance(param, click.Argument):
                usage = documented[path].split("```text\n", 1)[1].split("\n", 1)[0]
                assert (param.metavar or param.name or "").upper() in usage.upper(), (path, param.name)


def test_every_setting_has_its_row(pages: dict[str, str]) -> None:
    rows = [line for line in pages["settings.md"].splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [s.name for s in SETTINGS]
    for setting, row in zip(SETTINGS, rows, strict=True):
        assert f"`{setting.env}`" in row and (not setting.option or f"`{setting.option}`" in row), row


def test_the_generator_leaves_an_unchanged_page_alone(gen: ModuleType, tmp_path: Path) -> None:
    page = tmp_path / "reference" / "commands.md"
    assert gen.write_if_changed(page, "text") is True
    assert gen.write_if_changed(page, "text") is False, "mkdocs serve would rebuild for ever"
    assert page.read_text() == "text"
