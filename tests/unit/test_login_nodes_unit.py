"""Several login nodes sharing one home: each has its own daemon (socket, lock, store and log named
after the host), the shared jobs directory keeps their job ids and directories apart, and a daemon
asked about another login node's job says where it is (issue 14, item 5)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fakeslurm import ALICE, Core

from hpcsched.config import Settings
from hpcsched.daemon import owners, statedir
from hpcsched.daemon.lifecycle import acquire_lock, adopt_legacy_store
from hpcsched.daemon.store import Store
from hpcsched.errors import HpcschedError, JobNotFound, ValidationError

NFS_HOME = """\
/dev/sda1 / ext4 rw,relatime 0 0
fileserver:/export/home /home nfs4 rw,vers=4.2 0 0
tmpfs /tmp tmpfs rw 0 0
fs01:/scratch /scratch\\040dir lustre rw 0 0
"""


def settings_on(host: str, home: Path) -> Settings:
    return Settings.from_env({"HOME": str(home), "USER": "alice", "HPCSCHED_HOST": host})


def test_two_login_nodes_sharing_a_home_have_their_own_socket_lock_store_and_log(tmp_path: Path) -> None:
    one, two = settings_on("login1", tmp_path), settings_on("login2", tmp_path)
    assert one.state_dir == two.state_dir
    assert one.socket_path == f"{one.state_dir}/daemon-login1.sock"
    paths = {(s.socket_path, s.lock_path, s.store_path, s.log_path) for s in (one, two)}
    assert len({p for group in paths for p in group}) == 8


@pytest.mark.parametrize("host", ["login 2", "login2.cluster", "-x", "a" * 64, "../up"])
def test_a_host_setting_that_is_no_host_name_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValidationError, match=r"HPCSCHED_HOST: .* is not a host name"):
        settings_on(host, tmp_path)


def test_stores_of_two_login_nodes_never_share_an_id(tmp_path: Path) -> None:
    ids = {Store(str(tmp_path / f"store-{host}.sqlite"), host).store_id for host in ("login1", "login2")}
    assert {i.split("-")[0] for i in ids} == {"login1", "login2"}


def two_login_nodes(tmp_path: Path) -> tuple[Core, Core]:
    """Two daemons' cores with their own stores and one jobs directory."""
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    jobs = tmp_path / "jobs"
    return Core(tmp_path / "one", jobs_dir=jobs, host="login1"), Core(tmp_path / "two", jobs_dir=jobs, host="login2")


def test_two_daemons_sharing_a_jobs_directory_never_give_one_job_id_twice(tmp_path: Path) -> None:
    one, two = two_login_nodes(tmp_path)
    ids = [core.accept() for _ in range(3) for core in (one, two)]
    assert ids == [1, 2, 3, 4, 5, 6]
    dirs = [core.store.get_job(i).job_dir for i, core in zip(ids, [one, two] * 3, strict=True)]  # type: ignore[union-attr]
    assert len(set(dirs)) == 6
    assert one.accept() == 7  # a restarted count never goes back to an id the other daemon holds


def test_claims_made_at_the_same_time_by_two_login_nodes_never_share_an_id(tmp_path: Path) -> None:
    hosts = [owners.Owner("login1", "login1-aaaa"), owners.Owner("login2", "login2-bbbb")]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda n: owners.claim_job_id(str(tmp_path), 1, hosts[n % 2]), range(40)))
    assert sorted(ids) == list(range(1, 41))
    assert {owners.owner_of(str(tmp_path), i) for i in ids} == set(hosts)


def test_a_job_of_another_login_node_is_refused_naming_that_node(tmp_path: Path) -> None:
    one, two = two_login_nodes(tmp_path)
    job_id = one.accept()
    with pytest.raises(JobNotFound, match=f"job {job_id} belongs to your daemon on login node login1; "
                                          "run this command there"):
        two.service.op_status({"job": job_id}, ALICE)
    with pytest.raises(JobNotFound, match=r"^no job 99$"):
        two.service.op_status({"job": 99}, ALICE)
    assert one.service.op_status({"job": job_id}, ALICE)[0]["id"] == job_id


def test_the_latest_jobs_of_other_login_nodes_are_listed_by_host(tmp_path: Path) -> None:
    for n in range(1, 8):
        owners.claim_job_id(str(tmp_path), n, owners.Owner(["login1", "login2", "login3"][n % 3], "s"))
    assert owners.recent_elsewhere(str(tmp_path), "login1") == {"login2": [1, 4, 7], "login3": [2, 5]}
    assert owners.recent_elsewhere(str(tmp_path), "login1", recent=3) == {"login2": [7], "login3": [5]}
    assert owners.recent_elsewhere(str(tmp_path / "none"), "login1") == {}


def test_an_unreadable_claim_record_still_says_no_job(tmp_path: Path) -> None:
    (tmp_path / owners.OWNERS_DIR).mkdir()
    (tmp_path / owners.OWNERS_DIR / "5").write_text("not json")
    assert owners.owner_of(str(tmp_path), 5) is None


def test_a_state_directory_on_a_network_file_system_is_warned_about_naming_type_and_setting() -> None:
    mounts = [(p.replace("\\040", " "), t) for p, t in
              (line.split()[1:3] for line in NFS_HOME.splitlines())]
    warning = statedir.network_fs_warning("/home/alice/.local/state/hpcsched", mounts)
    assert warning is not None
    assert "on a nfs4 file system (mounted at /home)" in warning
    assert "state_dir (HPCSCHED_STATE_DIR)" in warning
    assert "lustre" in (statedir.network_fs_warning("/scratch dir/x", mounts) or "")
    assert statedir.network_fs_warning("/tmp/alice/hpcsched", mounts) is None
    assert statedir.network_fs_warning("/var/tmp/alice", mounts) is None


def legacy_store(state: Path) -> str:
    state.mkdir(mode=0o700)
    store = Store(str(state / "store.sqlite"))
    store.create_job(name="old", uid=1000, user="alice", request={}, nodes=1, jobs_root=str(state), now=1.0)
    legacy_id = store.store_id
    store.close()
    return legacy_id


def test_the_store_of_an_earlier_version_is_taken_over_by_the_first_daemon(tmp_path: Path) -> None:
    state = tmp_path / "state"
    legacy_id = legacy_store(state)
    new = str(state / "store-login1.sqlite")
    assert adopt_legacy_store(str(state), new)
    assert not (state / "store.sqlite").exists()
    store = Store(new, "login1")
    assert store.store_id == legacy_id and [j.name for j in store.list_jobs()] == ["old"]
    assert not adopt_legacy_store(str(state), str(state / "store-login2.sqlite"))  # taken already


def test_an_earlier_daemon_still_running_is_named_and_its_store_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    legacy_store(state)
    held = acquire_lock(str(state / "daemon.lock"))
    try:
        with pytest.raises(HpcschedError, match=r"a daemon of an earlier hpcsched version still runs .* stop it"):
            adopt_legacy_store(str(state), str(state / "store-login1.sqlite"))
    finally:
        held.close()
    assert sqlite3.connect(state / "store.sqlite").execute("SELECT name FROM jobs").fetchall() == [("old",)]
