"""The launcher's check that this node's CDI specification names the GPUs Slurm allocated."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from hpcsched.launcher.__main__ import check_gpu_devices
from hpcsched.launcher.cdi import SPEC_DIRS, device_names, gpu_names, missing_gpus, read_specs, spec_dirs
from hpcsched.launcher.container import LaunchSpec, NodeContext

REPO = Path(__file__).resolve().parents[2]
# The shape `nvidia-ctk cdi generate` writes: keys sorted, list items not indented, names by index,
# by UUID and "all".
GENERATED = """---
cdiVersion: 0.5.0
containerEdits:
  deviceNodes:
  - path: /dev/nvidiactl
  hooks:
  - args:
    - nvidia-ctk
    hookName: createContainer
    path: /usr/bin/nvidia-ctk
devices:
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
    - path: /dev/dri/card1
    hooks:
    - args:
      - nvidia-cdi-hook
      - create-symlinks
      - --link
      - ../card1::/dev/dri/by-path/pci-0000:84:00.0-card
      env:
      - NVIDIA_CTK_DEBUG=false
      hookName: createContainer
      path: /usr/bin/nvidia-cdi-hook
  name: "0"
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia1
  name: '1'
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
    - path: /dev/nvidia1
  name: all
kind: nvidia.com/gpu
"""


def test_generated_yaml_names_every_gpu_by_index() -> None:
    kind, names = device_names(GENERATED)
    assert kind == "nvidia.com/gpu"
    assert names == {"0", "1", "all", "GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c"}


def test_json_specification_is_read_too() -> None:
    text = json.dumps({"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu", "devices": [{"name": "3", "containerEdits": {}}]})
    assert device_names(text) == ("nvidia.com/gpu", {"3"})


def test_the_local_clusters_emulated_specification_names_both_gpus() -> None:
    assert gpu_names([(REPO / "cluster/cdi/hpcsched-emulated-gpus.yaml").read_text()]) == {"0", "1"}


def test_devices_of_another_kind_do_not_count() -> None:
    other = GENERATED.replace("kind: nvidia.com/gpu", "kind: vendor.com/fpga")
    assert gpu_names([other, "not: [a spec", "{broken json"]) == set()


def test_every_gpu_named_means_no_problem() -> None:
    assert missing_gpus(["0", "1"], "node2", {}, lambda dirs: [GENERATED]) is None


def test_missing_specification_names_the_node_the_gpu_and_the_remedy() -> None:
    why = missing_gpus(["1"], "node2", {}, lambda dirs: [])
    assert why is not None
    assert "node2" in why and "nvidia.com/gpu=1" in why and "nvidia-ctk cdi generate" in why
    assert "/etc/cdi or /var/run/cdi" in why and "none names any nvidia.com/gpu device" in why


def test_non_matching_specification_says_which_gpus_it_names() -> None:
    one = GENERATED.replace("name: '1'", "name: GPU-other")
    why = missing_gpus(["0", "1"], "node3", {}, lambda dirs: [one])
    assert why is not None
    assert "names nvidia.com/gpu=1," in why and "they name only nvidia.com/gpu=0)" in why


def test_spec_directories_can_be_pointed_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "gpu.yaml").write_text(GENERATED)
    (tmp_path / "notes.txt").write_text("kind: nvidia.com/gpu\ndevices:\n- name: '7'\n")
    env = {"HPCSCHED_CDI_SPEC_DIRS": f"{tmp_path}:{tmp_path / 'absent'}"}
    assert spec_dirs(env) == (str(tmp_path), str(tmp_path / "absent"))
    assert spec_dirs({}) == SPEC_DIRS
    assert gpu_names(read_specs(spec_dirs(env))) == gpu_names([GENERATED])
    assert missing_gpus(["7"], "node1", env) is not None


def _launch(style: str) -> LaunchSpec:
    return LaunchSpec(job_id=1, job_dir="/j", image="i", workdir="/w", procs_per_node=1, gpus_per_node=1, env=(),
                      script="t.py", script_args=(), gpu_device_style=style)


def _node(gpus: Sequence[str]) -> NodeContext:
    return NodeContext(slurm_job_id=5, node_rank=0, num_nodes=1, master_addr="a", node_name="node1", restart_count=0,
                       attempt=1, node_list="node1", gpus=tuple(gpus), master_port=20000)


def test_launcher_refuses_an_unknown_device_style() -> None:
    assert check_gpu_devices(_launch("nvml"), _node(["0"])) == "HPCSCHED_GPU_DEVICE_STYLE must be 'cdi' or 'dev', not 'nvml'"


@pytest.mark.parametrize(("style", "gpus"), [("dev", ["0"]), ("cdi", [])])
def test_cdi_is_checked_only_for_cdi_jobs_with_gpus(style: str, gpus: list[str], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("HPCSCHED_CDI_SPEC_DIRS", str(tmp_path))
    assert check_gpu_devices(_launch(style), _node(gpus)) is None
    assert check_gpu_devices(_launch("cdi"), _node(["0"])) is not None
