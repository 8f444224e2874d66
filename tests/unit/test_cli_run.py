"""``hpcsched run`` in-process (click's CliRunner), on the paths that need no daemon: a dry run
prints the plan, and bad input is refused with a message naming the path or field, exit status 2,
and no file written under the jobs or state directory."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fakeslurm import ALICE, Core

from hpcsched.cli.main import cli
from hpcsched.daemon import client
from hpcsched.planning import preflight

OK_SCRIPT = "print('hello')\n"


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Jobs and state directories inside tmp_path (not created), and a daemon (its core over a
    fake Slurm, in tmp_path/daemon) that answers a dry run's "plan" and must not be asked anything else."""
    paths = {"jobs": tmp_path / "jobs", "state": tmp_path / "state", "work": tmp_path / "work"}
    paths["work"].mkdir()
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(paths["jobs"]))
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(paths["state"]))
    monkeypatch.setenv("HPCSCHED_LAUNCHER_PYTHON", "/opt/venv/bin/python")
    monkeypatch.delenv("HPCSCHED_IMAGE", raising=False)
    serve_plans(monkeypatch, functools.cache(lambda: plan_only_core(tmp_path / "daemon", paths["jobs"])))
    return paths


def plan_only_core(root: Path, jobs: Path) -> Core:
    """A daemon's core whose Slurm does not list its partitions (any partition passes its check)."""
    core = Core(make_dir(root), jobs_dir=jobs)
    core.client.partitions = lambda: None  # type: ignore[method-assign]
    return core


def make_dir(path: Path) -> Path:
    path.mkdir()
    return path


def serve_plans(monkeypatch: pytest.MonkeyPatch, core: Callable[[], Core]) -> None:
    """The daemon is ``core``'s service; it answers a dry run's "plan" and must not be asked anything else."""
    def daemon(_settings: Any, op: str, args: dict[str, Any] | None = None, **__: Any) -> Any:
        if op != "plan":
            raise AssertionError(f"this command must not ask the daemon to {op}")
        return json.loads(json.dumps(core().service.op_plan(dict(args or {}), ALICE)))  # as the socket carries it

    monkeypatch.setattr(client, "ensure_daemon", lambda _settings: {})
    monkeypatch.setattr(client, "call", daemon)


def write(dirs: dict[str, Path], name: str, text: str = OK_SCRIPT) -> Path:
    path = dirs["work"] / name
    path.write_text(text)
    return path


def run(dirs: dict[str, Path], *args: str) -> Result:
    return CliRunner().invoke(cli, ["run", "--workdir", str(dirs["work"]), *args])


def assert_refused(result: Result, dirs: dict[str, Path], *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("hpcsched: error: ")
    for text in expected:
        assert text in result.stderr
    assert not dirs["jobs"].exists() and not dirs["state"].exists(), "nothing may be written for a refused request"


# --- dry run ------------------------------------------------------------------------------------


def test_dry_run_prints_the_job_directory_sbatch_command_and_batch_script(dirs: dict[str, Path]) -> None:
    script = write(dirs, "train.py")
    result = run(dirs, str(script), "--nodes", "2", "--dry-run", "--", "--epochs", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"# job directory: {re.escape(str(dirs['jobs']))}/login1-[0-9a-f]+-<job id>", lines[0])
    job_dir = lines[0].removeprefix("# job directory: ")
    assert lines[1] == "# sbatch command:"
    assert shlex.split(lines[2])[:4] == ["sbatch", "--parsable", "--export=ALL", f"--chdir={dirs['work']}"]
    assert lines[3] == f"# batch script ({job_dir}/batch.sh):"
    assert lines[4] == "#!/bin/bash -p"
    assert "#SBATCH --nodes=2" in lines
    assert f"-- {script} --epochs 3" in result.stdout


def test_dry_run_shows_the_daemons_store_id_and_placeholders_for_the_job(dirs: dict[str, Path]) -> None:
    script = write(dirs, "train.py")
    out = run(dirs, str(script), "--dry-run").stdout
    store_id = re.search(r"/(login1-[0-9a-f]+)-<job id>", out)
    assert store_id is not None
    assert f"'--output={dirs['jobs']}/{store_id[1]}-<job id>/slurm-%j.out'" in out
    assert f"#SBATCH --comment=hpcsched:{store_id[1]}:<job id>\n" in out
    assert "--job-id '<job id>' --job-dir" in out
    assert f"--store-id {store_id[1]} --job-nonce '<nonce>'" in out


def test_dry_run_is_the_plan_the_daemon_submits_with_its_values_for_the_placeholders(
        dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's settings win over the CLI's: its launcher Python, not HPCSCHED_LAUNCHER_PYTHON here."""
    core = Core(make_dir(tmp_path / "other"), jobs_dir=dirs["jobs"])
    serve_plans(monkeypatch, lambda: core)
    options = ("--image", "img", "--nodes", "1-3", "--start-nodes", "2", "--time", "1:00:00", "--env", "SEED=3")
    result = CliRunner().invoke(cli, ["run", "--workdir", str(core.work), *options, "--dry-run", "--json",
                                      str(core.work / "train.py"), "--", "--epochs", "3"])
    shown = json.loads(result.stdout)
    job_id, _ = core.submit(image="img", nodes="1-3", start_nodes=2, time="1:00:00", env=["SEED=3"],
                            script_args=["--epochs", "3"])
    job = core.store.get_job(job_id)
    assert job is not None
    submitted = core.submitter.plan(job)
    values = {"<job id>": str(job_id), "<nonce>": job.nonce}
    for key, value in (("job_dir", submitted.job_dir), ("script_path", submitted.script_path),
                       ("sbatch", list(submitted.argv)), ("launcher", list(submitted.launcher))):
        assert fill(shown[key], values) == value, key
    # quoting aside: a placeholder has spaces, so the script quotes what holds one
    assert fill(shown["batch_script"], values).replace("'", "") == submitted.script_text.replace("'", "")
    assert submitted.launcher[0] == sys.executable != "/opt/venv/bin/python"


def fill(shown: Any, values: dict[str, str]) -> Any:
    """A dry run's value with the placeholders replaced."""
    if isinstance(shown, list):
        return [fill(item, values) for item in shown]
    for placeholder, value in values.items():
        shown = shown.replace(placeholder, value)
    return shown


def test_a_work_directory_larger_than_the_walks_budget_is_accepted_with_a_note(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    script = write(dirs, "train.py")
    for n in range(3):
        write(dirs, f"data-{n}.txt", "")
    monkeypatch.setattr(preflight, "MAX_TREE_ENTRIES", 2)
    result = run(dirs, str(script), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"checked the first 2 entries of {dirs['work']} for symbolic links out of it" in result.stderr
    monkeypatch.setattr(preflight, "MAX_TREE_ENTRIES", 4)
    assert run(dirs, str(script), "--dry-run").stderr == ""


def test_dry_run_writes_nothing(dirs: dict[str, Path]) -> None:
    script = write(dirs, "train.py")
    assert run(dirs, str(script), "--dry-run").exit_code == 0
    assert not dirs["jobs"].exists() and not dirs["state"].exists()
    assert os.listdir(dirs["work"]) == ["train.py"]


def test_dry_run_of_a_script_named_with_spaces_and_quotes_is_accepted(dirs: dict[str, Path]) -> None:
    script = write(dirs, "my 'odd' train;.py")
    result = run(dirs, str(script), "--dry-run")
    assert result.exit_code == 0, result.output
    assert shlex.quote(str(script)) in result.stdout


# --- refusals -----------------------------------------------------------------------------------


def test_missing_script_is_refused_naming_its_path(dirs: dict[str, Path]) -> None:
    missing = dirs["work"] / "nothere.py"
    assert_refused(run(dirs, str(missing)), dirs, f"{missing}: no such file")


def test_script_with_a_syntax_error_is_refused_with_its_line(dirs: dict[str, Path]) -> None:
    script = write(dirs, "broken.py", "x = 1\ndef f(:\n    pass\n")
    assert_refused(run(dirs, str(script)), dirs, f"{script}:2: syntax error")


# The unreadable-script case (F4) runs for real as the cluster user in tests/integration/test_bad_input.py.


def test_directory_as_script_is_refused(dirs: dict[str, Path]) -> None:
    (dirs["work"] / "pkg.py").mkdir()
    assert_refused(run(dirs, str(dirs["work"] / "pkg.py")), dirs, "not a regular file")


def test_zero_nodes_is_refused_naming_the_field_and_the_limit(dirs: dict[str, Path]) -> None:
    script = write(dirs, "train.py")
    assert_refused(run(dirs, str(script), "--nodes", "0"), dirs, "--nodes: must be between 1 and 4096")


def test_name_with_a_newline_and_shell_code_is_refused_naming_the_field(dirs: dict[str, Path]) -> None:
    script = write(dirs, "train.py")
    assert_refused(run(dirs, str(script), "--name", "x\nrm -rf ~"), dirs, "--name: ")


def test_negative_gpus_are_refused_naming_the_field(dirs: dict[str, Path]) -> None:
    script = write(dirs, "train.py")
    assert_refused(run(dirs, str(script), "--gpus-per-node", "-1"), dirs, "--gpus-per-node: ")


def test_script_outside_the_workdir_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    outside = tmp_path / "train.py"
    outside.write_text(OK_SCRIPT)
    assert_refused(run(dirs, str(outside)), dirs, "not inside the work directory")


def test_missing_workdir_is_refused_naming_it(dirs: dict[str, Path], tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    result = CliRunner().invoke(cli, ["run", str(gone / "train.py"), "--workdir", str(gone)])
    assert_refused(result, dirs, f"--workdir: {gone}: not an existing directory")
