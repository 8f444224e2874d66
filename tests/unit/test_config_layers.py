"""Settings in layers: defaults < site file < user file < environment < options, and the errors a
bad file or variable gets (hpcsched/settings)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hpcsched.config import Settings
from hpcsched.errors import ValidationError
from hpcsched.planning.request import DEFAULT_IMAGE


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """An environment whose site file and user file live under tmp_path (neither written yet)."""
    (tmp_path / "xdg" / "hpcsched").mkdir(parents=True)
    return {"HOME": str(tmp_path / "home"), "USER": "alice", "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "HPCSCHED_SITE_CONFIG": str(tmp_path / "site.toml")}


def site(env: dict[str, str], text: str) -> str:
    Path(env["HPCSCHED_SITE_CONFIG"]).write_text(text)
    return env["HPCSCHED_SITE_CONFIG"]


def user(env: dict[str, str], text: str) -> str:
    path = Path(env["XDG_CONFIG_HOME"]) / "hpcsched" / "config.toml"
    path.write_text(text)
    return str(path)


def test_without_files_the_defaults_are_as_before(files: dict[str, str]) -> None:
    s = Settings.from_env(files)
    assert s.state_dir == f"{files['HOME']}/.local/state/hpcsched"
    assert s.jobs_dir == f"{files['HOME']}/.local/share/hpcsched/jobs"
    assert (s.poll_interval, s.image, s.admission) == (5.0, DEFAULT_IMAGE, True)
    assert (s.partition, s.memory, s.coordinator_socket, s.operators) == ("", "", "", ())
    assert s.host == socket.gethostname().split(".")[0]
    assert s.socket_path == f"{files['HOME']}/.local/state/hpcsched/daemon-{s.host}.sock"


def test_each_layer_overrides_the_one_below(files: dict[str, str]) -> None:
    site(files, 'partition = "gpu"\naccount = "proj1"\nqos = "normal"\ntime = "2:00:00"\n')
    user(files, 'account = "proj2"\nqos = "high"\ntime = "30"\n')
    env = {**files, "HPCSCHED_QOS": "low", "HPCSCHED_TIME": "45"}
    s = Settings.load(env, {"time": "10"})
    assert (s.partition, s.account, s.qos, s.time) == ("gpu", "proj2", "low", "10")


def test_existing_environment_variables_keep_working(files: dict[str, str]) -> None:
    user(files, 'state_dir = "/from/file"\npoll_interval = 9\n')
    env = {**files, "HPCSCHED_STATE_DIR": "/tmp/it/state", "HPCSCHED_JOBS_DIR": "/tmp/it/jobs",
           "HPCSCHED_POLL_INTERVAL": "1", "HPCSCHED_ADMISSION": "0", "HPCSCHED_IMAGE": "localhost/x:1",
           "HPCSCHED_LAUNCHER_PYTHON": "/opt/venv/bin/python", "HPCSCHED_COORDINATOR_SOCKET": "/run/c.sock"}
    s = Settings.from_env(env)
    assert (s.state_dir, s.jobs_dir, s.poll_interval, s.admission) == ("/tmp/it/state", "/tmp/it/jobs", 1.0, False)
    assert (s.image, s.launcher_python, s.coordinator_socket) == ("localhost/x:1", "/opt/venv/bin/python", "/run/c.sock")


def test_an_empty_variable_counts_as_unset(files: dict[str, str]) -> None:
    site(files, 'image = "site/image:2"\n')
    assert Settings.from_env({**files, "HPCSCHED_IMAGE": ""}).image == "site/image:2"


def test_a_site_file_names_per_user_paths(files: dict[str, str]) -> None:
    site(files, 'jobs_dir = "/scratch/$USER/hpcsched"\nstate_dir = "~/state"\noperators = ["ops1", "ops2"]\n'
                'coordinator_socket = "/run/hpcsched/site.sock"\n')
    s = Settings.from_env(files)
    assert (s.jobs_dir, s.state_dir) == ("/scratch/alice/hpcsched", f"{files['HOME']}/state")
    assert (s.operators, s.coordinator_socket) == (("ops1", "ops2"), "/run/hpcsched/site.sock")


def test_a_missing_file_is_fine_and_xdg_config_home_defaults_to_dot_config(files: dict[str, str]) -> None:
    env = {k: v for k, v in files.items() if k != "XDG_CONFIG_HOME"}
    path = Path(env["HOME"]) / ".config" / "hpcsched" / "config.toml"
    assert Settings.from_env(env).memory == ""
    path.parent.mkdir(parents=True)
    path.write_text('memory = "16G"\n')
    assert Settings.from_env(env).memory == "16G"


@pytest.mark.parametrize(("text", "problem"), [
    ('partion = "gpu"\n', "partion: unknown setting (known: state_dir,"),
    ("poll_interval = \"fast\"\n", "poll_interval: expected a number of seconds, got 'fast'"),
    ("poll_interval = 0\n", "poll_interval: must be more than 0 and at most 3600 seconds, got 0"),
    ("admission = 1\n", "admission: expected true or false, got 1"),
    ('time = "forever"\n', "time: expected "),
    ('memory = "lots"\n', "memory: expected a size such as 4000M or 16G, got 'lots'"),
    ('partition = "a b"\n', "partition: 'a b' is not a valid Slurm name"),
    ('state_dir = "relative/dir"\n', "state_dir: 'relative/dir' is not an absolute path"),
    ('jobs_dir = "/x/$PROJECT"\n', "jobs_dir: '/x/$PROJECT': only $HOME and $USER may be used in a path"),
    ('operators = "ops1"\n', "operators: expected a list of names"),
    ("account = 7\n", "account: expected a string, got 7"),
    ("partition = \n", "not valid TOML"),
])
def test_a_bad_site_file_names_file_key_and_problem(files: dict[str, str], text: str, problem: str) -> None:
    path = site(files, text)
    with pytest.raises(ValidationError) as e:
        Settings.from_env(files)
    assert str(e.value).startswith(f"{path}: {problem}")


def test_a_user_file_may_not_set_what_the_site_pins(files: dict[str, str]) -> None:
    path = user(files, 'coordinator_socket = "/home/alice/mine.sock"\n')
    with pytest.raises(ValidationError, match=f"^{path}: coordinator_socket: only the site's file may set this"):
        Settings.from_env(files)


def test_a_bad_variable_is_named(files: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=r"^HPCSCHED_POLL_INTERVAL: expected a number of seconds, got 'often'"):
        Settings.from_env({**files, "HPCSCHED_POLL_INTERVAL": "often"})
    with pytest.raises(ValidationError, match=r"^HPCSCHED_ADMISSION: expected 1 or 0"):
        Settings.from_env({**files, "HPCSCHED_ADMISSION": "maybe"})


def test_an_unreadable_file_is_an_error(files: dict[str, str], tmp_path: Path) -> None:
    """Read by an ordinary account (root reads any file): a file it may not read is an error."""
    path = site(files, 'partition = "gpu"\n')
    os.chmod(path, 0)
    os.chmod(tmp_path, 0o755)
    code = "import sys, json; from hpcsched.config import Settings; Settings.from_env(json.loads(sys.argv[1]))"
    as_nobody = {"user": "nobody"} if os.geteuid() == 0 else {}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(files)], capture_output=True, text=True,
                          timeout=60, cwd="/", **as_nobody)  # type: ignore[call-overload]
    assert f"ValidationError: {path}: cannot read the configuration file: Permission denied" in proc.stderr


def test_a_directory_in_place_of_the_file_is_an_error(files: dict[str, str]) -> None:
    os.mkdir(files["HPCSCHED_SITE_CONFIG"])
    with pytest.raises(ValidationError, match="cannot read the configuration file: Is a directory"):
        Settings.from_env(files)
