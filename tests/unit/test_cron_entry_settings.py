"""``cron install``: the cron pass runs with the settings of the shell that installed it: the site
and user files it named (HPCSCHED_SITE_CONFIG, XDG_CONFIG_HOME) and every HPCSCHED_* setting
variable, quoted for the shell, with ``%`` escaped for cron (issue 14)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from hpcsched.cli import cluster


def as_cron_runs_it(entry: str) -> list[str]:
    """The command's words as /bin/sh gets them from cron: the five time fields dropped, an escaped
    ``%`` given back as ``%``, the trailing marker comment gone."""
    command = entry.split(" ", 5)[5].replace("\\%", "%")
    return shlex.split(command, comments=True)


@pytest.fixture
def install_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in [n for n in os.environ if n.startswith("HPCSCHED_")]:
        monkeypatch.delenv(name)
    wanted = {"HPCSCHED_SITE_CONFIG": str(tmp_path / "site config.toml"),
              "XDG_CONFIG_HOME": str(tmp_path / "my 100% config"),
              "HPCSCHED_STATE_DIR": str(tmp_path / "state"),
              "HPCSCHED_PARTITION": "wide",
              "HPCSCHED_IMAGE_DIR": str(tmp_path / "images")}
    for name, value in wanted.items():
        monkeypatch.setenv(name, value)
    return wanted


def test_the_cron_entry_carries_the_install_time_settings(install_env: dict[str, str]) -> None:
    words = as_cron_runs_it(cluster.cron_entry("*/5 * * * *"))
    assignments = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    assert {k: assignments.get(k) for k in install_env} == install_env
    assert words[words.index("rebalance") - 1].endswith("hpcsched")


def test_a_percent_sign_is_escaped_for_cron(install_env: dict[str, str]) -> None:
    entry = cluster.cron_entry("*/5 * * * *")
    assert "my 100\\% config" in entry
    assert "%" not in entry.replace("\\%", "")


def test_unset_variables_are_not_written(install_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCSCHED_SITE_CONFIG")
    assert "HPCSCHED_SITE_CONFIG" not in cluster.cron_entry("0 3 * * *")
