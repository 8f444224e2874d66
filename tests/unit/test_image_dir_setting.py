"""image_dir (HPCSCHED_IMAGE_DIR) is a setting like the others: in the one table, shown by
``config show`` with its source, set by a site or user file; ``image push`` writes there and the
launcher on a node finds it in the same files when the job's environment does not carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_config_cli import hs, layers  # noqa: F401  (the fixture)

from hpcsched.images.node import configured_image_dir, node_images
from hpcsched.settings.schema import BY_NAME


def test_image_dir_is_in_the_settings_table() -> None:
    setting = BY_NAME["image_dir"]
    assert (setting.kind, setting.env, setting.default({"HOME": "/h"})) == ("path", "HPCSCHED_IMAGE_DIR", "")


def test_config_show_gives_the_site_files_image_dir_and_the_users_file_wins(layers: dict[str, Path]) -> None:  # noqa: F811
    layers["site"].write_text('image_dir = "/shared/images"\n')
    shown = json.loads(hs("config", "show", "--json").stdout)["settings"]["image_dir"]
    assert (shown["value"], shown["source"]) == ("/shared/images", f"site file {layers['site']}")
    layers["user"].write_text('image_dir = "$HOME/images"\n')
    shown = json.loads(hs("config", "show", "--json").stdout)["settings"]["image_dir"]
    assert shown["source"] == f"user file {layers['user']}" and shown["value"].endswith("/images")


def test_a_relative_image_dir_in_a_file_is_refused_naming_file_and_key(layers: dict[str, Path]) -> None:  # noqa: F811
    layers["user"].write_text('image_dir = "images"\n')
    result = hs("config", "show")
    assert result.exit_code == 2
    assert f"{layers['user']}: image_dir: 'images' is not an absolute path" in result.output


def test_image_push_without_dir_uses_the_setting(layers: dict[str, Path], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                 tmp_path: Path) -> None:
    """The directory check passes with the file's value; the push then fails on the missing image,
    which shows that the setting, not --dir, named the directory."""
    layers["site"].write_text(f'image_dir = "{tmp_path}/images"\n')
    monkeypatch.setenv("PATH", "/nonexistent")  # no podman: the push stops at the image lookup
    result = hs("image", "push", "localhost/x:1")
    assert (result.exit_code, result.output) == (1, "hpcsched: error: podman image exists failed: podman not found "
                                                    "on PATH (is Podman installed?)\n")


def test_the_node_reads_image_dir_from_the_users_file_when_the_job_does_not_pass_it(tmp_path: Path) -> None:
    user_file = tmp_path / "xdg" / "hpcsched" / "config.toml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text('image_dir = "/shared/images"\n')
    env = {"HOME": str(tmp_path), "USER": "alice", "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "HPCSCHED_SITE_CONFIG": str(tmp_path / "no-site.toml")}
    assert node_images("node1", env).image_dir == "/shared/images"
    assert configured_image_dir({**env, "HPCSCHED_IMAGE_DIR": "/passed"}) == "/passed"
    user_file.write_text("image_dir = 3\n")  # a broken file on the node: no directory, not a crash
    assert configured_image_dir(env) == ""
