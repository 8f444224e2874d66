"""Fuzzing ``hpcsched run --dry-run`` in-process (click's CliRunner; the daemon is its core in-process): whatever
text a user types for an option, the command prints the plan (exit 0) or refuses it with one line
that names the option (exit 2, a usage error) — never a traceback, never exit 1."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli_run import plan_only_core, serve_plans

from hpcsched.cli.main import cli

FUZZ = settings(max_examples=200, deadline=None, database=None)
OPTIONS = ["--name", "--time", "--nodes", "--mem", "--env", "--sbatch", "--partition"]
# Any text, text of the characters these options are made of, and that with the starts of valid
# values (an sbatch long option, a variable name), so that some values are accepted too.
typed = st.tuples(st.sampled_from(["", "", "--", "--constraint=", "A_1="]),
                  st.text(max_size=40) | st.text(alphabet="0123456789-:=GMKT,. x\n'\"$;", max_size=20)).map("".join)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A work directory with a script, settings pointing into it, and a daemon's core (over a
    fake Slurm) that answers the dry run's "plan" and nothing else."""
    root = tmp_path_factory.mktemp("cli")
    (root / "work").mkdir()
    (root / "work" / "train.py").write_text("print('hi')\n")
    env = {"HPCSCHED_JOBS_DIR": str(root / "jobs"), "HPCSCHED_STATE_DIR": str(root / "state"),
           "HPCSCHED_LAUNCHER_PYTHON": "/opt/venv/bin/python", "HPCSCHED_IMAGE": None}

    with pytest.MonkeyPatch.context() as patch:
        serve_plans(patch, functools.cache(lambda: plan_only_core(root / "daemon", root / "jobs")))
        yield root, env  # type: ignore[misc]


@FUZZ
@pytest.mark.parametrize("option", OPTIONS)
@given(value=typed)
def test_fuzz_run_option_is_planned_or_refused_naming_it(work: tuple[Path, dict[str, str]], option: str, value: str) -> None:
    root, env = work
    argv = ["run", str(root / "work" / "train.py"), "--workdir", str(root / "work"), "--dry-run", f"{option}={value}"]
    result = CliRunner().invoke(cli, argv, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    if result.exit_code == 0:
        assert result.stdout.startswith("# job directory: ")
    else:
        message = result.stderr.strip()
        assert option in message or (option == "--name" and "--job-name" in message), message
        assert not (root / "jobs").exists() and not (root / "state").exists()
