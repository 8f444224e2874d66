"""``hpcsched config show`` in-process, and the job defaults a site file gives ``hpcsched run``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_cli_run import plan_only_core, serve_plans

from hpcsched.cli.main import cli


@pytest.fixture
def layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A site file and a user file under tmp_path, and no HPCSCHED_* variable from outside."""
    for name in [n for n in os.environ if n.startswith("HPCSCHED_")]:
        monkeypatch.delenv(name)
    paths = {"site": tmp_path / "site.toml", "user": tmp_path / "xdg" / "hpcsched" / "config.toml",
             "work": tmp_path / "work"}
    paths["user"].parent.mkdir(parents=True)
    paths["work"].mkdir()
    monkeypatch.setenv("HPCSCHED_SITE_CONFIG", str(paths["site"]))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HPCSCHED_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HPCSCHED_JOBS_DIR", str(tmp_path / "jobs"))
    return paths


def hs(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_config_show_says_where_each_value_came_from(layers: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    layers["site"].write_text('partition = "gpu"\ntime = "4:00:00"\ncoordinator_socket = "/run/site.sock"\n')
    layers["user"].write_text('time = "1:00:00"\naccount = "proj"\n')
    monkeypatch.setenv("HPCSCHED_POLL_INTERVAL", "2")
    result = hs("config", "show", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    settings = {name: (s["value"], s["source"]) for name, s in shown["settings"].items()}
    assert settings["partition"] == ("gpu", f"site file {layers['site']}")
    assert settings["coordinator_socket"] == ("/run/site.sock", f"site file {layers['site']}")
    assert settings["time"] == ("1:00:00", f"user file {layers['user']}")
    assert settings["account"] == ("proj", f"user file {layers['user']}")
    assert settings["poll_interval"] == (2.0, "env HPCSCHED_POLL_INTERVAL")
    assert settings["qos"] == ("", "default")
    assert shown["files"]["site"] == {"path": str(layers["site"]), "found": True}


def test_config_show_table_lists_the_files_and_every_setting(layers: dict[str, Path]) -> None:
    layers["site"].write_text('memory = "8G"\n')
    result = hs("config", "show")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"site file: {layers['site']}"
    assert lines[1] == f"user file: {layers['user']} (none)"
    memory = next(line.split() for line in lines if line.startswith("memory "))
    assert memory == ["memory", "8G", "site", "file", str(layers["site"])]
    assert any(line.startswith("operators ") for line in lines)


def test_a_bad_file_fails_every_command_with_exit_2(layers: dict[str, Path]) -> None:
    layers["user"].write_text('qos = "normal"\nmemroy = "8G"\n')
    for args in (("config", "show"), ("status",)):
        result = hs(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr == f"hpcsched: error: {layers['user']}: memroy: unknown setting (known: state_dir, " \
            "jobs_dir, poll_interval, image, image_dir, launcher_python, admission, partition, account, qos, time, memory, " \
            "mem_per_cpu, host, coordinator_socket, operators)\n"


def test_run_takes_the_job_defaults_from_the_files_and_its_options_win(
        layers: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_plans(monkeypatch, lambda: plan_only_core(tmp_path / "daemon", tmp_path / "jobs"))
    layers["site"].write_text('partition = "gpu"\naccount = "site-acct"\ntime = "2:00:00"\nmemory = "8G"\n')
    layers["user"].write_text('qos = "high"\nimage = "localhost/mine:1"\n')
    (layers["work"] / "train.py").write_text("print('hi')\n")
    result = hs("run", "--workdir", str(layers["work"]), str(layers["work"] / "train.py"), "--dry-run",
                "--account", "mine", "--mem", "2G")
    assert result.exit_code == 0, result.output
    assert "--partition=gpu" in result.stdout and "--qos=high" in result.stdout
    assert "--time=0-02:00:00" in result.stdout and "localhost/mine:1" in result.stdout
    assert "--account=mine" in result.stdout and "--mem=2048M" in result.stdout
    assert "site-acct" not in result.stdout and "8192M" not in result.stdout
