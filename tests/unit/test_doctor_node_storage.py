"""``hpcsched doctor``'s node probe sees the image where the launcher looks for it: Podman with the
node's own storage root (HPCSCHED_NODE_STORAGE) and the shared image store; a pushed archive the
launcher loads on first use counts as present; the fix names the real command (issue 14)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hpcsched.config import Settings
from hpcsched.doctor import node, probes
from hpcsched.images.node import node_images
from hpcsched.images.shared import manifest_path, store_dir
from tests.unit.test_doctor_checklist import FakeSlurm, host
from tests.unit.test_doctor_verdicts import checks, probe_output

IMAGE = "localhost/hpcsched-train:latest"


def run_node_script(tmp_path: Path, env: dict[str, str], *args: str) -> list[str]:
    """NODE_SCRIPT under a real /bin/sh with a podman on PATH that prints its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text('#!/bin/sh\necho "podman $*"\n')
    (bin_dir / "podman").chmod(0o755)
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURMD_NODENAME": "node3", **env}
    out = subprocess.run(["/bin/sh", "-c", node.NODE_SCRIPT, "doctor", *args], env=full, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("podman ")]


def test_the_probe_runs_podman_with_the_node_storage_the_launcher_uses(tmp_path: Path) -> None:
    (tmp_path / "images" / "store").mkdir(parents=True)
    env = {"HPCSCHED_NODE_STORAGE": str(tmp_path / "node-{node}"), "HPCSCHED_IMAGE_DIR": str(tmp_path / "images")}
    launcher = node_images("node3", env).podman.argv()
    calls = run_node_script(tmp_path, env, IMAGE, str(tmp_path), "", store_dir(str(tmp_path / "images")))
    assert calls == [" ".join([*launcher, "info", "--format", "json"]), " ".join([*launcher, "image", "exists", IMAGE])]
    assert f"{tmp_path}/node-node3/graph" in calls[0]


def test_without_node_storage_the_probe_runs_plain_podman(tmp_path: Path) -> None:
    calls = run_node_script(tmp_path, {}, IMAGE, str(tmp_path), "", "")
    assert calls == ["podman info --format json", f"podman image exists {IMAGE}"]


def test_an_image_missing_on_the_node_but_pushed_is_loaded_on_first_use() -> None:
    text = probe_output(image_rc=1).replace("@@section jobs_dir", "@@section archive\n@@rc 0\n@@section jobs_dir")
    status, found, _fix = checks(text)["image"]
    assert status == "ok"
    assert found == f"{IMAGE} is not in Podman's storage on node1 yet; the launcher loads the pushed archive there " \
                    "on first use"


def test_a_missing_image_that_is_not_pushed_fails_with_the_push_command() -> None:
    status, found, fix = checks(probe_output(image_rc=1))["image"]
    assert (status, found) == ("fail", f"{IMAGE} is not in Podman's storage on node1")
    assert fix.startswith(f"push it from the login node: `hpcsched image push {IMAGE}`")


def test_the_probe_is_given_the_pushed_manifest_and_store_of_the_image_dir_setting() -> None:
    cfg = Settings(state_dir="/tmp/a/state", jobs_dir="/shared/jobs", poll_interval=5.0, image=IMAGE,
                   launcher_python="/usr/bin/python3", image_dir="/shared/images")
    slurm = FakeSlurm()
    probes.node_probe(cfg, host(slurm), 10.0)
    argv = slurm.calls[-1][0]
    assert argv[-4:] == [IMAGE, "/shared/jobs", manifest_path("/shared/images", IMAGE), store_dir("/shared/images")]
    assert argv[-2] == "/shared/images/archives/localhost_hpcsched-train_latest.json"
