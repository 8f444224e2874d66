"""The doctor's verdicts on captured outputs: one compute node's probe (Podman, its storage, the
image, the jobs directory, GPUs) and what the login node shows (subuid ranges, mounts, cron)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpcsched.doctor import login, node
from hpcsched.launcher.storage import parse_mounts

PODMAN_INFO = (Path(__file__).parents[1] / "fixtures" / "doctor" / "podman-info.json").read_text()
LOCAL_MOUNTS = "/dev/sda1 / ext4 rw,relatime 0 0\ntmpfs /tmp tmpfs rw 0 0\n"
NFS_HOME = LOCAL_MOUNTS + "fs1:/export/home /home nfs4 rw,vers=4.2 0 0\n"


def probe_output(info: str = PODMAN_INFO, podman_rc: int = 0, mounts: str = LOCAL_MOUNTS, image_rc: int = 0,
                 jobs_rc: int = 0) -> str:
    """What NODE_SCRIPT prints on node1 (podman info recorded on the local cluster)."""
    return (f"@@node node1\n@@section podman\n{info}\n@@rc {podman_rc}\n@@section mounts\n{mounts}@@rc 0\n"
            f"@@section image\n@@rc {image_rc}\n@@section jobs_dir\n@@rc {jobs_rc}\n")


def info_with(**store: Any) -> str:
    info = json.loads(PODMAN_INFO)
    info["store"].update(store)
    return json.dumps(info)


def checks(text: str) -> dict[str, tuple[str, str, str]]:
    findings = node.node_checks(node.parse_node_output(text), "localhost/hpcsched-train:latest", "/shared/jobs")
    return {f.name: (f.status, f.found, f.fix) for f in findings}


def test_a_working_node_passes_every_node_check() -> None:
    found = checks(probe_output())
    assert {name: status for name, (status, _, _) in found.items()} == dict.fromkeys(node.NODE_CHECKS, "ok")
    assert found["podman"][1] == "Podman 4.3.1 on node1: runtime crun, rootless, 65537 uids mapped"
    assert found["storage"][1].startswith("graph root /home/hpcuser/.local/share/containers/storage on node1 is node-local")


def test_warning_lines_before_podmans_json_are_skipped() -> None:
    text = 'time="2024" level=warning msg="The cgroupv2 manager is set to {systemd}"\n' + PODMAN_INFO
    assert checks(probe_output(info=text))["podman"][0] == "ok"


def test_E3_container_storage_on_a_network_file_system_fails_naming_node_and_remedy() -> None:
    status, found, fix = checks(probe_output(mounts=NFS_HOME))["storage"]
    assert status == "fail"
    assert ("graphroot /home/hpcuser/.local/share/containers/storage) is on a network file system (nfs4 at /home) "
            "on node1") in found
    assert "set graphroot and runroot in ~/.config/containers/storage.conf to a local directory" in fix


def test_C3_full_container_storage_fails() -> None:
    status, found, _ = checks(probe_output(info=info_with(graphRootAllocated=10 << 20, graphRootUsed=9 << 20)))["storage"]
    assert (status, found.split(":")[0]) == ("fail", "node-local storage full on node1")


def test_podman_failing_on_the_node_fails_podman_and_storage() -> None:
    found = checks(probe_output(info="Error: cannot set up namespace using newuidmap: exit status 1", podman_rc=125))
    assert found["podman"][:2] == ("fail", "podman info failed on node1 (exit 125): Error: cannot set up namespace "
                                           "using newuidmap: exit status 1")
    assert "uidmap package" in found["podman"][2]
    assert found["storage"][0] == "fail"


def test_no_subordinate_range_on_the_node_fails_podman() -> None:
    info = json.loads(PODMAN_INFO)
    info["host"]["idMappings"]["uidmap"] = [{"container_id": 0, "host_id": 1001, "size": 1}]
    status, found, fix = checks(probe_output(info=json.dumps(info)))["podman"]
    assert status == "fail" and "1 uids mapped (no subordinate range on the node)" in found
    assert "/etc/subuid" in fix


def test_a_missing_image_fails_naming_image_and_node() -> None:
    status, found, fix = checks(probe_output(image_rc=1))["image"]
    assert (status, found) == ("fail", "localhost/hpcsched-train:latest is not in Podman's storage on node1")
    assert "`hpcsched image push localhost/hpcsched-train:latest`" in fix


def test_a_jobs_directory_the_node_does_not_see_fails() -> None:
    status, found, fix = checks(probe_output(jobs_rc=1))["jobs_dir"]
    assert (status, found) == ("fail", "/shared/jobs is not visible on node1")
    assert "file system the compute nodes share" in fix


def test_a_probe_cut_short_fails_what_it_did_not_reach() -> None:
    text = probe_output()
    found = checks(text[:text.index("@@section image")])
    assert found["podman"][0] == "ok" and found["image"][0] == "fail" and found["jobs_dir"][0] == "fail"


def test_a_busy_cluster_is_a_warning_and_a_refused_step_a_failure() -> None:
    busy = node.no_node("srun: error: Unable to allocate resources: Requested nodes are busy", 30)
    assert [(f.status, f.found) for f in busy] == [
        ("warn", "not checked: could not get a node within 30 s (the cluster is busy)")] * 4
    refused = node.no_node("srun: error: Unable to allocate resources: Invalid account or account/partition combination "
                           "specified", 30)
    assert {f.status for f in refused} == {"fail"} and "Invalid account" in refused[0].found


def test_gpus_visible_as_allocated() -> None:
    out = "@@node g1\n@@section visible\n0\n@@rc 0\n@@section gpus\nGPU 0: NVIDIA H100 (UUID: GPU-1)\n@@rc 0\n"
    assert node.gpus(node.parse_node_output(out)).status == "ok"
    none = "@@node g1\n@@section visible\n0\n@@rc 0\n@@section gpus\nNo devices were found\n@@rc 6\n"
    finding = node.gpus(node.parse_node_output(none))
    assert finding.status == "fail" and "nvidia-smi sees none: No devices were found" in finding.found


def test_subordinate_ranges() -> None:
    lines = "alice:100000:65536\n1002:200000:65536\nbob:300000:1000\n"
    assert login.subordinate_ids("alice", 1001, lines, lines).status == "ok"
    assert login.subordinate_ids("carol", 1002, lines, lines).status == "ok"  # by uid
    assert login.subordinate_ids("bob", 1003, lines, lines).status == "warn"
    missing = login.subordinate_ids("dave", 1004, lines, lines)
    assert (missing.status, missing.found) == ("fail", "/etc/subuid has no range for dave")
    assert "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 dave" in missing.fix
    no_file = login.subordinate_ids("alice", 1001, lines, None)
    assert (no_file.status, no_file.found) == ("fail", "/etc/subgid does not exist")


def test_state_directory_on_a_network_file_system_warns() -> None:
    finding = login.state_dir("/home/alice/.local/state/hpcsched", "/home/alice", parse_mounts(NFS_HOME))
    assert finding.status == "warn"
    assert finding.found.startswith("/home/alice/.local/state/hpcsched is on nfs4 (mounted at /home)")
    assert "set state_dir to a local disk" in finding.fix
    assert login.state_dir("/tmp/a", "/tmp", parse_mounts(NFS_HOME)).status == "ok"


def test_cron_and_the_coordinator() -> None:
    assert login.regular_passes("", None, True, False).status == "ok"
    assert login.regular_passes("", None, False, False).status == "warn"
    dead_entry = login.regular_passes("", None, False, True)
    assert dead_entry.status == "fail" and dead_entry.found.endswith("rebalance entry: it never runs")
    site_down = login.regular_passes("/run/site.sock", "Connection refused", None, False)
    assert (site_down.name, site_down.status) == ("coordinator", "fail")
    assert site_down.found == "cannot reach the site coordinator at /run/site.sock: Connection refused"
    assert login.regular_passes("/run/site.sock", None, None, False).status == "ok"


def test_slurm_and_accounting() -> None:
    assert login.slurm_commands("slurm 22.05.8\n", None, []).found.startswith("slurm 22.05.8;")
    assert login.slurm_commands(None, None, ["sbatch", "srun"]).found == "not found on PATH: sbatch, srun"
    off = login.accounting("sacct: error: Slurm accounting storage is disabled")
    assert off.status == "fail" and "AccountingStorageType" in off.fix


def test_podman_state_naming_killed_containers_says_how_it_is_reset_and_leaves_the_image_unjudged() -> None:
    stale = ('time="2026" level=error msg="invalid internal status, try resetting the pause process with '
             '\\"podman system migrate\\": cannot re-exec process to join the existing user namespace"')
    found = checks(probe_output(info=stale, podman_rc=1, image_rc=1))
    assert found["podman"][0] == "fail" and "srun -w node1 podman system migrate" in found["podman"][2]
    assert found["image"][:2] == ("fail", "not checked: Podman does not work on node1"), "not 'the image is missing'"
