"""Validation of single request fields: every refusal names the option and, where there is one,
the limit (reliability items F1-F3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcsched.errors import ValidationError
from hpcsched.planning import fields
from hpcsched.planning.fields import NodeRange


def refusal(parse: Callable[..., object], *args: object) -> str:
    """The message of the ValidationError that ``parse(*args)`` raises."""
    with pytest.raises(ValidationError) as info:
        parse(*args)
    return str(info.value)


# --- names (F1) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x\nrm -rf ~", "a;b", "$(id)", "`id`", "a b", "", "-x", "é", "a" * 65])
def test_name_with_shell_code_or_newline_is_refused_naming_the_option(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        fields.parse_name(name)
    assert info.value.field == "--name"
    assert str(info.value).startswith("--name: ")


@pytest.mark.parametrize("name", ["train", "resnet50.v2", "a_b-c", "7", "a" * 64])
def test_plain_name_is_accepted_unchanged(name: str) -> None:
    assert fields.parse_name(name) == name


@pytest.mark.parametrize("word", ["debug;id", "gpu part", "a\nb", "", "$(id)"])
def test_slurm_word_with_shell_characters_is_refused_naming_the_option(word: str) -> None:
    assert refusal(fields.parse_slurm_word, "--partition", word).startswith("--partition: ")


# --- counts (F2) --------------------------------------------------------------------------------


def test_negative_gpus_per_node_is_refused_naming_the_field_and_the_limits() -> None:
    message = refusal(fields.parse_gpus_per_node, -1)
    assert message.startswith("--gpus-per-node: ")
    assert "between 0 and 64" in message


def test_gpus_per_node_above_the_limit_is_refused_naming_the_limit() -> None:
    assert "between 0 and 64" in refusal(fields.parse_gpus_per_node, 65)


@pytest.mark.parametrize("text", ["0", "1e9", "4097", "-1", "two", "", "1.5"])
def test_invalid_node_count_is_refused_naming_nodes_and_the_limits(text: str) -> None:
    message = refusal(fields.parse_nodes, text)
    assert message.startswith("--nodes: ")
    assert "between 1 and 4096" in message


def test_node_count_of_zero_names_the_limit() -> None:
    assert refusal(fields.parse_nodes, "0") == "--nodes: must be between 1 and 4096, got 0"


def test_fixed_node_count_is_a_non_elastic_range() -> None:
    nodes = fields.parse_nodes("3")
    assert nodes == NodeRange(3, 3)
    assert not nodes.elastic
    assert str(nodes) == "3"


def test_node_range_is_elastic_and_prints_as_given() -> None:
    nodes = fields.parse_nodes("2-8")
    assert nodes == NodeRange(2, 8)
    assert nodes.elastic
    assert str(nodes) == "2-8"


def test_node_range_with_maximum_below_minimum_is_refused() -> None:
    assert "maximum below its minimum" in refusal(fields.parse_nodes, "5-2")


@pytest.mark.parametrize("text", ["1-2-3", "0-4", "1-5000", "-3", "3-"])
def test_malformed_or_out_of_range_node_range_is_refused(text: str) -> None:
    assert refusal(fields.parse_nodes, text).startswith("--nodes: ")


@pytest.mark.parametrize(
    ("parse", "field", "low", "high"),
    [
        (fields.parse_cpus_per_node, "--cpus-per-node", 1, fields.MAX_CPUS_PER_NODE),
        (fields.parse_procs_per_node, "--procs-per-node", 1, fields.MAX_PROCS_PER_NODE),
    ],
)
def test_per_node_counts_outside_their_limits_are_refused(parse: Callable[..., int], field: str, low: int, high: int) -> None:
    for bad in (low - 1, high + 1):
        message = refusal(parse, bad)
        assert message.startswith(f"{field}: ")
        assert f"between {low} and {high}" in message
    assert parse(low) == low and parse(str(high)) == high


# --- time (F2) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90 * 60),
        ("5:30", 5 * 60 + 30),
        ("2:03:04", 2 * 3600 + 3 * 60 + 4),
        ("1-2", 26 * 3600),
        ("1-2:30", 26 * 3600 + 30 * 60),
        ("1-02:30:15", 26 * 3600 + 30 * 60 + 15),
        ("365-0", fields.MAX_TIME_SECONDS),
    ],
)
def test_every_slurm_time_format_converts_to_seconds(text: str, seconds: int) -> None:
    assert fields.parse_time(text) == seconds


@pytest.mark.parametrize("text", ["0", "0:0", "0-0", "0-00:00:00"])
def test_zero_time_limit_is_refused_naming_time(text: str) -> None:
    message = refusal(fields.parse_time, text)
    assert message.startswith("--time: ")
    assert "longer than zero" in message


def test_time_limit_above_a_year_is_refused_naming_the_limit() -> None:
    assert "at most 365 days" in refusal(fields.parse_time, "365-00:00:01")


@pytest.mark.parametrize("text", ["-5", "1:2:3:4", "1-1:2:3:4", "1h", "", "1-", "a-1", "1:-1"])
def test_malformed_time_is_refused_naming_time(text: str) -> None:
    assert refusal(fields.parse_time, text).startswith("--time: ")


@given(st.integers(min_value=1, max_value=fields.MAX_TIME_SECONDS))
def test_formatted_time_parses_back_to_the_same_seconds(seconds: int) -> None:
    assert fields.parse_time(fields.format_time(seconds)) == seconds


# --- memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mib"),
    [("4000", 4000), ("500M", 500), ("16G", 16384), ("16g", 16384), ("16GB", 16384), ("2048K", 2), ("1T", 1 << 20),
     ("0", 0), ("0G", 0)],
)
def test_memory_sizes_convert_to_mib(text: str, mib: int) -> None:
    assert fields.parse_mem(text) == mib


@pytest.mark.parametrize("text", ["1K", "1.5G", "lots", "16 G", "-1G", "16P"])
def test_invalid_or_empty_memory_size_is_refused_naming_mem(text: str) -> None:
    assert refusal(fields.parse_mem, text).startswith("--mem: ")


def test_memory_above_the_limit_is_refused_naming_the_limit() -> None:
    assert "at most 64T" in refusal(fields.parse_mem, "65T")


# --- environment --------------------------------------------------------------------------------


def test_env_item_splits_at_the_first_equals_sign() -> None:
    assert fields.parse_env("OPTS=a=b c") == ("OPTS", "a=b c")


def test_env_value_with_shell_code_is_kept_verbatim() -> None:
    assert fields.parse_env("MSG=$(id) 'x' \"y\"") == ("MSG", "$(id) 'x' \"y\"")


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ("PATH=/evil", "set by the image"),
        ("HOME=/x", "set by hpcsched"),
        ("MASTER_PORT=1", "set by torchrun"),
        ("RANK=0", "set by torchrun"),
        ("CUDA_VISIBLE_DEVICES=0", "GPUs Slurm allocated"),
        ("SLURM_JOB_ID=1", "set by Slurm"),
        ("SLURMD_NODENAME=n", "set by Slurm"),
        ("HPCSCHED_JOB_ID=1", "set by hpcsched"),
        ("TORCHELASTIC_RUN_ID=x", "set by torchrun"),
    ],
)
def test_env_key_that_slurm_hpcsched_or_torchrun_sets_is_refused_saying_who(item: str, why: str) -> None:
    message = refusal(fields.parse_env, item)
    assert message.startswith(f"--env: {item.split('=')[0]} cannot be set: ")
    assert why in message


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ("LD_PRELOAD=/tmp/evil.so", "dynamic loader variable"),
        ("LD_LIBRARY_PATH=/tmp", "dynamic loader variable"),
        ("LD_AUDIT=/tmp/a.so", "dynamic loader variable"),
        ("BASH_ENV=/tmp/x.sh", "shell start-up file"),
        ("ENV=/tmp/x.sh", "shell start-up file"),
        ("BASH_FUNC_ls%%=() { id; }", "not a valid variable name"),
        ("BASH_FUNC_ls=() { id; }", "exported shell function"),
        ("PYTHONPATH=/tmp", "modules hpcsched's own processes"),
        ("PYTHONHOME=/tmp", "Python library"),
        ("SBATCH_TIMELIMIT=5", "read by Slurm's commands"),
        ("SRUN_CPUS_PER_TASK=2", "read by Slurm's commands"),
        ("SALLOC_PARTITION=x", "read by Slurm's commands"),
    ],
)
def test_F7_env_that_changes_the_code_every_process_runs_is_refused_with_a_reason(item: str, why: str) -> None:
    assert why in refusal(fields.parse_env, item)


@pytest.mark.parametrize("item", ["NCCL_DEBUG=INFO", "OMP_NUM_THREADS=4", "ld_preload=x", "LDFLAGS=-O2",
                                  "PYTHONUNBUFFERED=1", "ENVIRONMENT=prod", "MY_SLURM_TAG=x"])
def test_env_key_outside_the_refused_names_is_accepted(item: str) -> None:
    assert fields.parse_env(item) == tuple(item.split("=", 1))


@pytest.mark.parametrize("item", ["NOVALUE", "1ABC=x", "A-B=x", "=x", "A B=x"])
def test_env_item_that_is_not_key_equals_value_is_refused(item: str) -> None:
    assert refusal(fields.parse_env, item).startswith("--env: ")


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b"])
def test_env_value_with_newline_or_nul_is_refused(value: str) -> None:
    assert "newline or NUL" in refusal(fields.parse_env, f"KEY={value}")


# --- extra sbatch directives (F3) ---------------------------------------------------------------


@pytest.mark.parametrize("directive", ["--constraint=a100", "--exclusive", "--gres=gpu:a100:2",
                                       "--mail-type=END,FAIL", "--nodelist=node[1-3]", "--gpus=4"])
def test_ordinary_sbatch_directive_is_accepted_unchanged(directive: str) -> None:
    assert fields.parse_sbatch_directive(directive) == directive


@pytest.mark.parametrize("directive", sorted(fields.RESERVED_SBATCH))
def test_directive_hpcsched_sets_itself_is_refused(directive: str) -> None:
    message = refusal(fields.parse_sbatch_directive, f"{directive}=1")
    assert message == f"--sbatch: {directive} is set by hpcsched; use its own option instead"


@pytest.mark.parametrize("directive", ["--out=/tmp/x", "--comm=other", "--chd=/", "--ui=0", "--open-m=truncate"])
def test_abbreviation_of_a_reserved_directive_is_refused(directive: str) -> None:
    # sbatch reads #SBATCH lines with getopt_long, which takes any unambiguous prefix.
    assert "is set by hpcsched" in refusal(fields.parse_sbatch_directive, directive)


@pytest.mark.parametrize(
    "directive",
    ["--comment=x\n#SBATCH --uid=0", "--x=$(id)", "--x=`id`", "--x=a b", "--x=a;b", "-o x", "--x='a'",
     "constraint=a100", "--x=a\rb", "--X=1", "--"],
)
def test_directive_with_injection_or_bad_shape_is_refused(directive: str) -> None:
    assert refusal(fields.parse_sbatch_directive, directive).startswith("--sbatch: ")


# --- free text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a b", "it's", 'say "hi"', "a;b", "$(touch /tmp/pwned)", "`id`", "héllo ✓"])
def test_free_text_with_shell_characters_is_accepted_unchanged(text: str) -> None:
    assert fields.check_text("SCRIPT", text) == text


def test_free_text_longer_than_the_limit_is_refused_naming_the_limit() -> None:
    assert refusal(fields.check_text, "SCRIPT_ARGS", "x" * 11, 10) == "SCRIPT_ARGS: longer than 10 characters"
