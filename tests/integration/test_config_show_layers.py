"""``hpcsched config show`` with a site file and a user file, as a user on the local cluster runs it
(issue 14's acceptance): each value and the layer it came from, and the job the layers make."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import UserSession, _chown_tree


def layered_env(session: UserSession) -> dict[str, str]:
    """A site file (root's, as a site's is) and the user's own file under XDG_CONFIG_HOME."""
    site = session.root / "site.toml"
    site.write_text('partition = "wide"\ntime = "0:30:00"\nimage_dir = "/srv/$USER/images"\n', encoding="utf-8")
    os.chmod(site, 0o644)
    user = session.root / "xdg" / "hpcsched" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('time = "0:20:00"\n', encoding="utf-8")
    _chown_tree(session.root / "xdg", session.user)
    return {"HPCSCHED_SITE_CONFIG": str(site), "XDG_CONFIG_HOME": str(session.root / "xdg")}


def test_config_show_names_each_layer_with_a_site_and_a_user_file(session: UserSession) -> None:
    env = layered_env(session)
    shown = json.loads(session.hs("config", "show", "--json", env=env).stdout)
    site, user = env["HPCSCHED_SITE_CONFIG"], f"{env['XDG_CONFIG_HOME']}/hpcsched/config.toml"
    assert shown["files"] == {"site": {"path": site, "found": True}, "user": {"path": user, "found": True}}
    values = {name: (s["value"], s["source"]) for name, s in shown["settings"].items()}
    assert values["partition"] == ("wide", f"site file {site}")
    assert values["image_dir"] == (f"/srv/{session.user}/images", f"site file {site}")
    assert values["time"] == ("0:20:00", f"user file {user}")
    assert values["poll_interval"] == (1.0, "env HPCSCHED_POLL_INTERVAL")
    assert values["qos"] == ("", "default")
    text = session.hs("config", "show", env=env).stdout.splitlines()
    assert text[:2] == [f"site file: {site}", f"user file: {user}"]
    assert any(line.split() == ["partition", "wide", "site", "file", site] for line in text)


def test_the_layers_make_the_job_and_an_option_wins(session: UserSession) -> None:
    env = layered_env(session)
    script = session.write("train.py", "print('trained')\n")
    plan = json.loads(session.hs("run", "--dry-run", "--json", str(script), env=env).stdout)["batch_script"]
    assert "#SBATCH --partition=wide" in plan and "#SBATCH --time=0-00:20:00" in plan, plan
    plan = json.loads(session.hs("run", "--dry-run", "--json", "--partition", "debug", str(script),
                                 env=env).stdout)["batch_script"]
    assert "#SBATCH --partition=debug" in plan


def test_a_bad_user_file_fails_with_file_key_and_problem(session: UserSession) -> None:
    env = layered_env(session)
    Path(env["XDG_CONFIG_HOME"], "hpcsched", "config.toml").write_text('time = "soon"\n', encoding="utf-8")
    proc = session.hs("config", "show", env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"hpcsched: error: {env['XDG_CONFIG_HOME']}/hpcsched/config.toml: time: ")
