"""hpcsched doctor's GPU check runs the launcher's CDI check on a node with an allocated GPU."""

from __future__ import annotations

from pathlib import Path

from hpcsched.doctor import node
from hpcsched.launcher.cdi import check_step

STEP = {"SLURMD_NODENAME": "node3", "SLURM_STEP_GPUS": "1", "CUDA_VISIBLE_DEVICES": "1"}
SPEC = 'kind: nvidia.com/gpu\ndevices:\n- name: "0"\n- name: "1"\n'


def output(cdi: str, rc: int) -> node.NodeOutput:
    return node.parse_node_output(f"@@node node3\n@@section visible\n1\n@@rc 0\n@@section gpus\n"
                                  f"GPU 0: NVIDIA A100 (UUID: GPU-1)\n@@rc 0\n@@section cdi\n{cdi}\n@@rc {rc}\n")


def test_the_allocated_gpu_named_by_cdi_passes(tmp_path: Path) -> None:
    (tmp_path / "nvidia.yaml").write_text(SPEC)
    passed, found = check_step({**STEP, "HPCSCHED_CDI_SPEC_DIRS": str(tmp_path)})
    assert passed and found == "the CDI specification on node3 names nvidia.com/gpu=1"
    finding = node.gpus(output(found, 0))
    assert finding.status == "ok" and finding.found.endswith("; the CDI specification on node3 names nvidia.com/gpu=1")


def test_a_missing_specification_fails_the_check_with_the_remedy(tmp_path: Path) -> None:
    passed, found = check_step({**STEP, "HPCSCHED_CDI_SPEC_DIRS": str(tmp_path)})
    assert not passed
    finding = node.gpus(output(found, 1))
    assert finding.status == "fail"
    assert finding.found.startswith("no CDI specification on node3 names nvidia.com/gpu=1, which Slurm allocated")
    assert finding.fix.startswith("the node's administrator must generate it with `nvidia-ctk cdi generate")


def test_a_launcher_python_that_cannot_run_the_check_fails_it() -> None:
    finding = node.gpus(output("/usr/bin/python3: No module named hpcsched.launcher.cdi", 1))
    assert finding.status == "fail" and "No module named hpcsched" in finding.found
    assert "HPCSCHED_LAUNCHER_PYTHON" in finding.fix


def test_dev_style_and_a_step_without_gpus() -> None:
    assert check_step({**STEP, "HPCSCHED_GPU_DEVICE_STYLE": "dev"})[0]
    passed, found = check_step({"SLURMD_NODENAME": "node3"})
    assert not passed and found == "Slurm allocated no GPU to this step on node3"
