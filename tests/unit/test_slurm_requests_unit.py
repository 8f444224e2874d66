"""The Slurm requests people really write (issue 14, item 6): constraints with & and |, several
partitions, --mem 0 and the per-CPU memory default, typed GPUs, --exclusive and reservations. Each
reaches the batch script as one validated #SBATCH line; each bad value is refused with exit 2
naming the option, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli_run import assert_refused, dirs, run, write  # noqa: F401  (dirs is a fixture)

from hpcsched.errors import ValidationError
from hpcsched.planning import fields
from hpcsched.planning.request import JobRequest
from hpcsched.slurm.parse import parse_partitions, parse_sinfo_nodes
from hpcsched.slurm.partitions import JobShape, check_fits

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm-22.05"


def sbatch_lines(dirs: dict[str, Path], *args: str) -> list[str]:  # noqa: F811
    """The #SBATCH lines `hpcsched run --dry-run` shows for a job with ``args``."""
    result = run(dirs, str(write(dirs, "train.py")), "--dry-run", *args)
    assert result.exit_code == 0, result.output
    return [line for line in result.stdout.splitlines() if line.startswith("#SBATCH ")]


def test_every_request_option_becomes_one_validated_sbatch_line(dirs: dict[str, Path]) -> None:  # noqa: F811
    lines = sbatch_lines(dirs, "-C", "(a100|h100)&ib", "-p", "gpu,gpu-long", "--gpus-per-node", "a100:4",
                         "--exclusive", "--reservation", "maint_2", "--mem", "0")
    for expected in ('#SBATCH --constraint="(a100|h100)&ib"', "#SBATCH --partition=gpu,gpu-long",
                     "#SBATCH --gpus-per-node=a100:4", "#SBATCH --exclusive", "#SBATCH --reservation=maint_2",
                     "#SBATCH --mem=0M"):
        assert expected in lines
    assert not any(line.startswith("#SBATCH --mem-per-cpu") for line in lines)


def test_a_job_that_asks_for_no_memory_asks_for_the_default_per_cpu(dirs: dict[str, Path]) -> None:  # noqa: F811
    lines = sbatch_lines(dirs, "--cpus-per-node", "2")
    assert "#SBATCH --mem-per-cpu=1000M" in lines and not any(x.startswith("#SBATCH --mem=") for x in lines)


def test_an_elastic_job_keeps_its_nodes_to_itself(dirs: dict[str, Path]) -> None:  # noqa: F811
    assert not any(line.startswith("#SBATCH --mem") for line in sbatch_lines(dirs, "--nodes", "1-3"))
    assert "#SBATCH --mem=2048M" in sbatch_lines(dirs, "--nodes", "1-3", "--mem", "2G")


def test_the_memory_settings_replace_the_default(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("HPCSCHED_MEM_PER_CPU", "3G")
    assert "#SBATCH --mem-per-cpu=3072M" in sbatch_lines(dirs)
    monkeypatch.setenv("HPCSCHED_MEMORY", "8G")
    lines = sbatch_lines(dirs)
    assert "#SBATCH --mem=8192M" in lines and not any(x.startswith("#SBATCH --mem-per-cpu") for x in lines)


def test_an_empty_mem_per_cpu_setting_leaves_memory_to_the_partition(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "config" / "hpcsched").mkdir(parents=True)
    (tmp_path / "config" / "hpcsched" / "config.toml").write_text('mem_per_cpu = ""\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert not any(line.startswith("#SBATCH --mem") for line in sbatch_lines(dirs))


@pytest.mark.parametrize(("args", "expected"), [
    (("-C", "a100||h100"), "--constraint: 'a100||h100': unexpected '|'"),
    (("-C", "a100;reboot"), "--constraint: 'a100;reboot' is not a node feature name"),
    (("-C", "(a100|h100"), "--constraint: '(a100|h100' is incomplete"),
    (("-C", "a100\n#SBATCH --uid=0"), "--constraint: "),
    (("-p", "gpu,,long"), "--partition: '' in 'gpu,,long' is not a valid Slurm name"),
    (("-p", "gpu,gpu"), "--partition: 'gpu,gpu' names a partition twice"),
    (("-p", "gpu long"), "--partition: 'gpu long' is not a valid Slurm name"),
    (("--gpus-per-node", "a100:0"), "--gpus-per-node: must be between 1 and 64, got 0"),
    (("--gpus-per-node", "a100:65"), "--gpus-per-node: must be between 1 and 64, got 65"),
    (("--gpus-per-node", "a1 00:4"), "--gpus-per-node: GPU type 'a1 00' is not allowed"),
    (("--gpus-per-node", "a100:4,v100:2"), "--gpus-per-node: "),
    (("--reservation", "maint;x"), "--reservation: 'maint;x' is not a valid Slurm name"),
    (("--mem", "-1G"), "--mem: "),
    (("--env", "NVIDIA_VISIBLE_DEVICES=all"), "--env: NVIDIA_VISIBLE_DEVICES cannot be set: it is set from the GPUs"),
    (("--env", "ROCR_VISIBLE_DEVICES=0"), "--env: ROCR_VISIBLE_DEVICES cannot be set"),
    (("--sbatch=--mem-per-gpu=8G",), "--sbatch: --mem-per-gpu is set by hpcsched"),
])
def test_a_bad_request_is_refused_with_exit_2_naming_the_option(
        dirs: dict[str, Path], args: tuple[str, ...], expected: str) -> None:  # noqa: F811
    script = write(dirs, "train.py")
    assert_refused(run(dirs, str(script), *args), dirs, expected)


def test_a_bad_partition_setting_fails_with_exit_2_and_several_are_accepted(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("HPCSCHED_PARTITION", "debug,wide")
    assert "#SBATCH --partition=debug,wide" in sbatch_lines(dirs)
    monkeypatch.setenv("HPCSCHED_PARTITION", "debug;wide")
    assert_refused(run(dirs, str(write(dirs, "train.py")), "--dry-run"), dirs, "HPCSCHED_PARTITION: ")


def test_typed_gpus_and_the_new_options_survive_the_trip_to_the_daemon() -> None:
    request = JobRequest.from_options({
        "script": "/w/t.py", "workdir": "/w", "gpus_per_node": "a100:4", "constraint": "a100 | h100",
        "partition": "gpu,gpu-long", "exclusive": True, "reservation": "r1", "mem": "0",
    })
    assert (request.gpus_per_node, request.gpu_type, request.constraint, request.mem_mb) == (4, "a100", "a100|h100", 0)
    assert JobRequest.from_options(request.to_options()) == request


def test_memory_per_node_and_per_cpu_together_are_refused_over_the_socket() -> None:
    with pytest.raises(ValidationError, match=r"^--mem: memory is given both per node"):
        JobRequest.from_options({"script": "/w/t.py", "workdir": "/w", "mem": "4G", "mem_per_cpu": "1G"})


def test_exclusive_must_be_a_switch_over_the_socket() -> None:
    with pytest.raises(ValidationError, match=r"^--exclusive: expected true or false"):
        JobRequest.from_options({"script": "/w/t.py", "workdir": "/w", "exclusive": "yes; rm"})


def test_a_long_constraint_is_refused_without_being_echoed() -> None:
    with pytest.raises(ValidationError) as e:
        fields.parse_constraint("a&" * 600 + "b")
    assert str(e.value) == "--constraint: longer than 1024 characters"


def test_several_partitions_fit_when_one_of_them_can_start_the_job() -> None:
    partitions = parse_partitions((FIXTURES / "scontrol-partitions.txt").read_text())
    nodes = parse_sinfo_nodes((FIXTURES / "sinfo-nodes.json").read_text())
    check_fits(JobShape("small,debug", 3, 1, 0), partitions, nodes)  # small has MaxNodes=1, debug 3 nodes
    with pytest.raises(ValidationError, match=r"^--nodes: partition small has 2 nodes; --nodes 4"):
        check_fits(JobShape("small,debug", 4, 1, 0), partitions, nodes)
    with pytest.raises(ValidationError, match=r"^--partition: invalid partition nope"):
        check_fits(JobShape("debug,nope", 1, 1, 0), partitions, nodes)
