"""``hpcsched doctor`` on the real local cluster, as a user runs it: all green on the real set-up,
and red with the right fix on set-ups broken on purpose (a throw-away user without subordinate
ids, a state directory on a network file system, an image the nodes do not have)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import NODE_PREFIX, UserSession, end_session, make_session

NO_SUBIDS_USER = "hpcdoctornosub"
WAIT = "300"  # the shared cluster may be busy: wait this long for a node


def doctor(session: UserSession, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = session.hs("doctor", "--json", *args, check=False, env=env, timeout=int(WAIT) + 300)
    assert proc.returncode in (0, 1), proc.stderr
    findings = {f["name"]: f for f in json.loads(proc.stdout)}
    return proc.returncode, findings


def test_doctor_is_all_green_on_the_local_cluster(session: UserSession) -> None:
    code, found = doctor(session, "--wait", WAIT)
    assert code == 0, found
    not_ok = {name: f for name, f in found.items() if f["status"] not in ("ok", "skip")}
    assert set(not_ok) <= {"cron"}, not_ok  # the local cluster may run no cron: a warning, not a failure
    assert found["podman"]["found"].startswith("Podman ") and "rootless" in found["podman"]["found"]
    assert found["image"]["found"] == "localhost/hpcsched-train:latest is in Podman's storage on " + \
        found["image"]["found"].rsplit(" ", 1)[-1]
    # the local cluster's emulated GPUs (cluster/gres.conf): Slurm allocates one, the node lists it
    assert re.fullmatch(rf"{NODE_PREFIX}\d+: allocated GPU\(s\) [01] visible: GPU [01]: hpcsched emulated GPU .*",
                        found["gpus"]["found"]), found["gpus"]


def test_doctor_names_a_missing_image_and_how_to_get_it(session: UserSession) -> None:
    code, found = doctor(session, "--wait", WAIT, env={"HPCSCHED_IMAGE": "localhost/does-not-exist"})
    assert code == 1
    image = found["image"]
    assert image["status"] == "fail"
    assert image["found"].startswith(f"localhost/does-not-exist is not in Podman's storage on {NODE_PREFIX}")
    assert image["fix"].startswith("push it from the login node: `hpcsched image push localhost/does-not-exist`")
    assert found["podman"]["status"] == "ok"


def test_doctor_warns_about_a_state_directory_on_a_network_file_system(session: UserSession) -> None:
    """The local cluster has no network file system: the mount table says the state directory is NFS."""
    table = session.write("mounts", f"/dev/sda1 / ext4 rw 0 0\nfs1:/export/state {session.state_dir} nfs4 rw 0 0\n")
    code, found = doctor(session, "--wait", "1", "--mount-table", str(table))
    state = found["state_dir"]
    assert state["status"] == "warn"
    assert state["found"] == f"{session.state_dir} is on nfs4 (mounted at {session.state_dir}), a network file system"
    assert "set state_dir to a local disk" in state["fix"] and "HPCSCHED_STATE_DIR" in state["fix"]
    assert code == (1 if any(f["status"] == "fail" for f in found.values()) else 0)


@pytest.fixture
def user_without_subids(cluster: None) -> Iterator[UserSession]:
    """A new local user whose /etc/subuid and /etc/subgid have no range, removed afterwards."""
    remove_user(NO_SUBIDS_USER)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0",
                    NO_SUBIDS_USER], check=True, timeout=60)
    session = make_session(NO_SUBIDS_USER)
    try:
        yield session
    finally:
        end_session(session)
        remove_user(NO_SUBIDS_USER)


def remove_user(user: str) -> None:
    """End what the probe left running as ``user`` (rootless Podman's pause process outlives the
    step), by process id, then delete the account and its home."""
    pids = subprocess.run(["ps", "-u", user, "-o", "pid="], capture_output=True, text=True, timeout=30).stdout.split()
    for pid in pids:
        subprocess.run(["kill", "-KILL", pid], capture_output=True, timeout=30)
    deleted = subprocess.run(["userdel", "-r", user], capture_output=True, text=True, timeout=60)
    assert deleted.returncode in (0, 6), f"userdel {user}: {deleted.stderr}"  # 6: no such user


def test_doctor_tells_a_user_without_subordinate_ids_what_to_ask_for(user_without_subids: UserSession) -> None:
    code, found = doctor(user_without_subids, "--wait", "1")
    assert code == 1
    subids = found["subids"]
    assert (subids["status"], subids["found"]) == ("fail", f"/etc/subuid has no range for {NO_SUBIDS_USER}")
    assert f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {NO_SUBIDS_USER}" in subids["fix"]
