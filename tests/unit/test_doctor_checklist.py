"""The whole checklist through a fake host (captured outputs), what the srun probe asks Slurm
for, and ``hpcsched doctor``'s output and exit status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner

from hpcsched.cli import doctor as doctor_cli
from hpcsched.cli.main import cli
from hpcsched.config import Settings
from hpcsched.doctor import probes
from hpcsched.slurm.runner import CommandResult, SlurmCommandError
from tests.unit.test_doctor_verdicts import LOCAL_MOUNTS, probe_output

SUBIDS = "alice:100000:65536\n"
CFG = Settings(state_dir="/tmp/alice/state", jobs_dir="/shared/jobs", poll_interval=5.0, image="localhost/train:1",
               launcher_python="/usr/bin/python3", partition="gpu", account="proj")


class FakeSlurm:
    """Answers by command name; an exception value is raised as that command's failure."""

    def __init__(self, **answers: str | SlurmCommandError) -> None:
        self.answers = {"sinfo": "slurm 22.05.8\n", "sacct": "", "srun": probe_output(),
                        "sinfo-o": "gpu (null)\ndebug* (null)\n", **answers}
        self.calls: list[tuple[list[str], float | None]] = []

    def __call__(self, argv: Sequence[str], *, timeout: float | None = None, stdin: str | None = None) -> CommandResult:
        self.calls.append((list(argv), timeout))
        key = "sinfo-o" if argv[:2] == ["sinfo", "-h"] else argv[0]
        answer = self.answers[key]
        if isinstance(answer, SlurmCommandError):
            raise answer
        return CommandResult(tuple(argv), answer, "")


def host(slurm: FakeSlurm | None = None, **changes: Any) -> probes.Host:
    files = {"/etc/subuid": SUBIDS, "/etc/subgid": SUBIDS, "/proc/self/mounts": LOCAL_MOUNTS}
    base = probes.Host(slurm=slurm or FakeSlurm(), read=files.get, which=lambda c: f"/usr/bin/{c}",
                       processes=lambda: ["systemd", "cron", "sshd", "bash"], crontab=lambda: "",
                       reach=lambda _p: None, existing=lambda p: "/tmp", user="alice", uid=1001)
    return replace(base, **changes)


def statuses(findings: list[Any]) -> dict[str, str]:
    return {f.name: f.status for f in findings}


def test_a_healthy_cluster_passes_every_check() -> None:
    findings = probes.checklist(CFG, host(), 30)
    assert statuses(findings) == {"slurm": "ok", "accounting": "ok", "subids": "ok", "podman": "ok", "storage": "ok",
                                  "image": "ok", "jobs_dir": "ok", "state_dir": "ok", "cron": "ok", "gpus": "skip"}
    assert findings[-1].found == "partition gpu has no GPUs (Gres (null))"


def test_the_node_probe_is_one_bounded_step_with_the_users_settings() -> None:
    slurm = FakeSlurm()
    probes.checklist(CFG, host(slurm), 45)
    steps = [(argv, timeout) for argv, timeout in slurm.calls if argv[0] == "srun"]
    assert len(steps) == 1
    argv, timeout = steps[0]
    assert "--immediate=45" in argv and "--partition=gpu" in argv and "--account=proj" in argv
    assert not any(a.startswith("--qos") for a in argv)
    assert argv[-4:] == ["localhost/train:1", "/shared/jobs", "", ""]  # arguments of the script, never pasted into it
    assert timeout == 45 + probes.STEP_EXTRA_S


def test_gpus_are_probed_only_where_the_partition_has_them() -> None:
    gpu_out = "@@node g1\n@@section visible\n0\n@@rc 0\n@@section gpus\nGPU 0: NVIDIA A100 (UUID: GPU-1)\n@@rc 0\n"
    slurm = FakeSlurm(**{"sinfo-o": "gpu gpu:a100:4\ndebug* (null)\n", "srun": gpu_out})
    finding = probes.gpus(CFG, host(slurm), 30)
    assert (finding.status, finding.found) == ("ok", "g1: allocated GPU(s) 0 visible: GPU 0: NVIDIA A100 (UUID: GPU-1)")
    assert [argv for argv, _ in slurm.calls if "--gpus-per-node=1" in argv]
    cpu_only = FakeSlurm()
    assert probes.gpus(CFG, host(cpu_only), 30).status == "skip"
    assert not [argv for argv, _ in cpu_only.calls if argv[0] == "srun"]


def test_missing_slurm_and_accounting_fail() -> None:
    no_sacct = SlurmCommandError(["sacct"], 1, "", "sacct: error: Slurm accounting storage is disabled\n")
    findings = statuses(probes.checklist(CFG, host(FakeSlurm(sacct=no_sacct), which=lambda c: None), 30))
    assert (findings["slurm"], findings["accounting"]) == ("fail", "fail")


def test_a_busy_cluster_warns_and_exits_0() -> None:
    busy = SlurmCommandError(["srun"], 1, "", "srun: job 7 queued and waiting for resources\n"
                             "srun: error: Unable to allocate resources: Requested nodes are busy\n")
    findings = probes.checklist(CFG, host(FakeSlurm(srun=busy)), 30)
    assert {f.status for f in findings if f.name in ("podman", "image")} == {"warn"}


def test_a_failing_section_still_reports_the_others() -> None:
    """sh exits with the last command's status: a jobs directory the node does not see makes srun fail."""
    failed = SlurmCommandError(["srun"], 1, probe_output(jobs_rc=1), "srun: error: node1: task 0: Exited with exit code 1")
    findings = statuses(probes.checklist(CFG, host(FakeSlurm(srun=failed)), 30))
    assert (findings["podman"], findings["image"], findings["jobs_dir"]) == ("ok", "ok", "fail")


def test_the_coordinator_replaces_cron_when_configured() -> None:
    cfg = replace(CFG, coordinator_socket="/run/site.sock")
    findings = probes.checklist(cfg, host(reach=lambda _p: "No such file or directory"), 30)
    assert [(f.name, f.status) for f in findings if f.name in ("cron", "coordinator")] == [("coordinator", "fail")]


def test_partition_gres_takes_the_default_partition_when_none_is_set() -> None:
    table = "gpu gpu:a100:4\ngpu gpu:v100:2\ncpu* (null)\n"
    assert probes.partition_gres(table, "") == ("cpu", ["(null)"])
    assert probes.partition_gres(table, "gpu") == ("gpu", ["gpu:a100:4", "gpu:v100:2"])


@pytest.fixture
def fake_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    holder: dict[str, Any] = {"host": host()}
    monkeypatch.setattr(doctor_cli, "Host", lambda mount_table: replace(holder["host"], mount_table=mount_table))
    monkeypatch.setenv("HPCSCHED_SITE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HPCSCHED_STATE_DIR", "/tmp/alice/state")
    return holder


def test_doctor_prints_a_checklist_and_exits_1_when_a_check_fails(fake_host: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("ok    slurm       slurm 22.05.8")
    fake_host["host"] = host(FakeSlurm(srun=probe_output(image_rc=1)))
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 1
    image = next(f for f in json.loads(result.stdout) if f["name"] == "image")
    assert image["status"] == "fail" and image["found"].endswith("is not in Podman's storage on node1")


def test_doctor_reads_the_mount_table_it_is_given(fake_host: dict[str, Any], tmp_path: Any) -> None:
    table = tmp_path / "mounts"
    table.write_text(LOCAL_MOUNTS + "fs1:/export /tmp/alice nfs4 rw 0 0\n")
    fake_host["host"] = host(read=lambda p: table.read_text() if p == str(table) else SUBIDS,
                             existing=lambda p: "/tmp/alice")
    result = CliRunner().invoke(cli, ["doctor", "--mount-table", str(table)])
    assert result.exit_code == 0
    assert "WARN  state_dir   /tmp/alice/state is on nfs4 (mounted at /tmp/alice), a network file system" in result.stdout
