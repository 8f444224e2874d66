"""The training image on every node, on the real cluster: each emulated node gets its own Podman
storage root (HPCSCHED_NODE_STORAGE), so a pushed image really is loaded node by node."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from conftest import UserSession, _chown_tree, copy_example, node

IMAGE = "localhost/hpcsched-train:latest"
MISSING = "localhost/hpcsched-missing:1"


def node_env(session: UserSession) -> dict[str, str]:
    images, nodes = session.root / "images", session.root / "nodes"
    for path in (images, nodes):
        path.mkdir(exist_ok=True)
        _chown_tree(path, session.user)
    return {"HPCSCHED_IMAGE_DIR": str(images), "HPCSCHED_NODE_STORAGE": f"{nodes}/node-{{node}}"}


def check(session: UserSession, env: dict[str, str], image: str = IMAGE) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = session.hs("image", "check", "--json", "--wait", "300", image, env=env, check=False, timeout=600)
    return proc.returncode, {v["node"]: v for v in json.loads(proc.stdout)}


def local_id(session: UserSession) -> str:
    return session.as_user(["podman", "image", "inspect", "--format", "{{.Id}}", IMAGE]).stdout.strip()


def loads(logs: str) -> list[str]:
    return re.findall(rf"hpcsched launcher on (\S+): loading {re.escape(IMAGE)} \(\w{{12}}\) from ", logs)


def test_a_pushed_archive_is_loaded_on_each_nodes_first_use_and_check_sees_where(session: UserSession) -> None:
    env = node_env(session)
    rc, before = check(session, env)
    assert rc == 1 and {v["status"] for v in before.values()} == {"missing"}, before
    pushed = json.loads(session.hs("image", "push", "--json", env=env, timeout=600).stdout)
    assert pushed["id"] == local_id(session) and pushed["how"] == "archive"
    assert os.path.getsize(session.root / "images" / "archives" / pushed["archive"]) == pushed["bytes"]
    session.hs("daemon", "start", env=env)
    copy_example(session, "allreduce.py")
    job = session.run_job("allreduce.py", "--nodes", "2", "--mem", "400M")
    info = session.wait(job, timeout=600)
    logs = session.logs(job)
    assert info["state"] == "COMPLETED", logs
    assert len(loads(logs)) == len(set(loads(logs))) == 2, logs  # each of the job's nodes loads it once
    rc, after = check(session, env)
    used = set(loads(logs))
    assert rc == 0 and {n for n, v in after.items() if v["status"] == "ok"} == used, after
    assert {v["status"] for n, v in after.items() if n not in used} <= {"loadable", "skip"}, after


def test_jobs_starting_together_on_one_node_load_the_image_once(session: UserSession) -> None:
    env = node_env(session)
    session.hs("image", "push", env=env, timeout=600)
    session.hs("daemon", "start", env=env)
    copy_example(session, "allreduce.py")
    jobs = [session.run_job("allreduce.py", "--nodes", "1", "--mem", "400M", f"--sbatch=--nodelist={node(3)}")
            for _ in range(2)]
    infos = [session.wait(job, timeout=600) for job in jobs]
    logs = "".join(session.logs(job) for job in jobs)
    assert [i["state"] for i in infos] == ["COMPLETED", "COMPLETED"], logs
    assert loads(logs) == [node(3)], logs


def test_an_image_store_on_the_shared_file_system_needs_no_load(session: UserSession) -> None:
    env = node_env(session)
    pushed = json.loads(session.hs("image", "push", "--how", "store", "--json", env=env, timeout=600).stdout)
    listed = json.loads(session.hs("image", "list", "--json", env=env).stdout)
    assert {"where": "store", "image": IMAGE, "id": pushed["id"]}.items() <= next(
        r for r in listed if r["where"] == "store").items(), listed
    assert not (session.root / "images" / "archives" / "localhost_hpcsched-train_latest.tar").exists()
    session.hs("daemon", "start", env=env)
    copy_example(session, "allreduce.py")
    job = session.run_job("allreduce.py", "--nodes", "2", "--mem", "400M")
    info = session.wait(job, timeout=600)
    logs = session.logs(job)
    assert info["state"] == "COMPLETED" and loads(logs) == [], logs
    rc, after = check(session, env)
    assert rc == 0 and {v["status"] for v in after.values()} <= {"ok", "skip"}, after


def test_a_job_whose_image_no_node_has_fails_naming_the_node_and_the_push(session: UserSession) -> None:
    """In the logs, and where a user looks first: ``status`` and ``status --json``."""
    copy_example(session, "allreduce.py")
    job = session.run_job("allreduce.py", "--nodes", "1", "--image", MISSING)
    info = session.wait(job)
    logs = session.logs(job)
    assert (info["state"], info["exit_code"]) == ("FAILED", 2), logs
    node = info["node_list"]
    why = (f"image {MISSING} is not in Podman's storage on {node} and no shared image directory is set (image_dir: "
           f"HPCSCHED_IMAGE_DIR or a config file): push it from the login node with `hpcsched image push {MISSING}`")
    assert f"hpcsched launcher on {node}: {why}" in logs
    assert "torchrun" not in logs and "allreduce rank" not in logs
    assert info["problem"].startswith(f"on {node}: {why}"), info
    table = " ".join(session.hs("status", str(job)).stdout.split())
    assert f"exit 2: on {node}: image {MISSING} is not in Podman's storage on {node}" in table
    assert f"`hpcsched image push {MISSING}`" in table
