"""``JobRequest.from_options``: the one place raw input becomes a trusted request."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hpcsched.errors import ValidationError
from hpcsched.planning import fields
from hpcsched.planning.fields import NodeRange
from hpcsched.planning.request import DEFAULT_IMAGE, KERNEL_TREES, SYSTEM_DIRS, JobRequest, default_name

WORKDIR = "/home/alice/proj"
SCRIPT = f"{WORKDIR}/train.py"


def request(**options: Any) -> JobRequest:
    return JobRequest.from_options({"script": SCRIPT, "workdir": WORKDIR, **options})


def refused_field(**options: Any) -> str:
    with pytest.raises(ValidationError) as info:
        JobRequest.from_options({"script": SCRIPT, "workdir": WORKDIR, **options})
    return info.value.field


def test_minimal_request_gets_the_documented_defaults() -> None:
    r = request()
    assert r == JobRequest(script=SCRIPT, workdir=WORKDIR, name="train", nodes=NodeRange(1, 1))
    assert (r.gpus_per_node, r.cpus_per_node, r.procs_per_node, r.image) == (0, 1, 1, DEFAULT_IMAGE)
    assert not r.elastic


def test_processes_per_node_default_to_the_gpus_per_node() -> None:
    assert request(gpus_per_node=4).procs_per_node == 4


def test_more_processes_than_gpus_is_refused() -> None:
    assert refused_field(gpus_per_node=2, procs_per_node=3) == "--procs-per-node"


def test_elastic_node_range_makes_an_elastic_request() -> None:
    assert request(nodes="1-4").elastic


def test_unknown_request_field_is_refused_by_name() -> None:
    assert refused_field(nodez=2) == "nodez"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"name": "x\nrm -rf ~"}, "--name"),
        ({"gpus_per_node": -1}, "--gpus-per-node"),
        ({"nodes": "0"}, "--nodes"),
        ({"nodes": "1e9"}, "--nodes"),
        ({"nodes": "5-2"}, "--nodes"),
        ({"time": "0"}, "--time"),
        ({"mem": "lots"}, "--mem"),
        ({"partition": "debug;id"}, "--partition"),
        ({"account": "a b"}, "--account"),
        ({"qos": "$(id)"}, "--qos"),
        ({"image": "img; rm -rf /"}, "--image"),
        ({"env": ["PATH=/evil"]}, "--env"),
        ({"env": "A=1"}, "--env"),
        ({"sbatch": ["--uid=0"]}, "--sbatch"),
        ({"sbatch": ["--comment=x\n#SBATCH --uid=0"]}, "--sbatch"),
        ({"script_args": "--epochs 3"}, "SCRIPT_ARGS"),
        ({"script_args": ["ok", "two\nlines"]}, "SCRIPT_ARGS"),
        ({"script_args": ["x"] * 1001}, "SCRIPT_ARGS"),
    ],
)
def test_invalid_option_is_refused_naming_its_field(options: dict[str, Any], field: str) -> None:
    assert refused_field(**options) == field


# --- paths --------------------------------------------------------------------------------------


def test_script_outside_the_workdir_is_refused() -> None:
    with pytest.raises(ValidationError, match="not inside the work directory") as info:
        JobRequest.from_options({"script": "/elsewhere/train.py", "workdir": WORKDIR})
    assert info.value.field == "SCRIPT"


def test_script_escaping_the_workdir_through_dotdot_is_refused() -> None:
    with pytest.raises(ValidationError, match="not inside the work directory"):
        JobRequest.from_options({"script": f"{WORKDIR}/../other/train.py", "workdir": WORKDIR})


def test_workdir_that_only_shares_a_prefix_with_the_script_is_refused() -> None:
    with pytest.raises(ValidationError, match="not inside the work directory"):
        JobRequest.from_options({"script": "/home/alice/project2/train.py", "workdir": "/home/alice/proj"})


@pytest.mark.parametrize("workdir", ["/data/a:b", "/data/a,b"])
def test_workdir_with_colon_or_comma_is_refused(workdir: str) -> None:
    with pytest.raises(ValidationError, match="':' or ','") as info:
        JobRequest.from_options({"script": f"{workdir}/train.py", "workdir": workdir})
    assert info.value.field == "--workdir"


@pytest.mark.parametrize(("script", "workdir"), [("train.py", WORKDIR), (SCRIPT, "proj"), (None, WORKDIR), (SCRIPT, "")])
def test_relative_or_missing_path_is_refused(script: Any, workdir: Any) -> None:
    with pytest.raises(ValidationError, match=r"absolute path|a path is required"):
        JobRequest.from_options({"script": script, "workdir": workdir})


@pytest.mark.parametrize(
    "filename", ["my train.py", "it's.py", 'say "hi".py', "a;b.py", "$(touch x).py", "`id`.py", "trän ✓.py"]
)
def test_script_path_with_spaces_quotes_semicolons_or_unicode_is_accepted(filename: str) -> None:
    r = JobRequest.from_options({"script": f"{WORKDIR}/{filename}", "workdir": WORKDIR})
    assert r.script == f"{WORKDIR}/{filename}"
    fields.parse_name(r.name)  # the default name derived from it is still a valid name


def test_script_path_with_newline_is_refused() -> None:
    assert refused_field(script=f"{WORKDIR}/a\nb.py") == "SCRIPT"


def test_paths_are_normalised() -> None:
    r = JobRequest.from_options({"script": "/home/alice/proj/./sub/../train.py", "workdir": "/home/alice/proj/"})
    assert (r.script, r.workdir) == (SCRIPT, WORKDIR)


@given(st.text())
def test_default_name_is_always_a_valid_job_name(stem: str) -> None:
    assert fields.parse_name(default_name(f"/w/{stem.replace('/', '_')}.py"))


# --- round trip ---------------------------------------------------------------------------------

_FREE_TEXT = st.text(st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)), max_size=20)
_SEGMENT = st.text(
    st.characters(blacklist_characters="/\x00\n\r:,", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))
_ENV_KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True).filter(
    lambda k: fields.env_refusal(k) is None
)
_DIRECTIVE = st.sampled_from(["--constraint=a100", "--exclusive", "--gres=gpu:2", "--mail-type=END", "--gpus=2"])
_SLURM_WORD = st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@st.composite
def raw_requests(draw: st.DrawFn) -> dict[str, Any]:
    workdir = "/" + "/".join(draw(st.lists(_SEGMENT, min_size=1, max_size=3)))
    assume(workdir not in SYSTEM_DIRS and not workdir.startswith(KERNEL_TREES))
    low = draw(st.integers(1, 64))
    gpus = draw(st.integers(0, fields.MAX_GPUS_PER_NODE))
    return {
        "script": f"{workdir}/{draw(_SEGMENT)}.py",
        "workdir": workdir,
        "name": draw(st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)),
        "nodes": f"{low}-{draw(st.integers(low, 128))}" if draw(st.booleans()) else str(low),
        "script_args": draw(st.lists(_FREE_TEXT, max_size=4)),
        "gpus_per_node": gpus,
        "procs_per_node": draw(st.integers(1, gpus or fields.MAX_PROCS_PER_NODE)),
        "cpus_per_node": draw(st.integers(1, fields.MAX_CPUS_PER_NODE)),
        "mem": draw(st.none() | st.integers(1, 1 << 20).map(lambda n: f"{n}M") | st.integers(1, 1024).map(lambda n: f"{n}G")),
        "time": draw(st.none() | st.integers(1, fields.MAX_TIME_SECONDS).map(fields.format_time)),
        "partition": draw(_SLURM_WORD),
        "account": draw(_SLURM_WORD),
        "qos": draw(_SLURM_WORD),
        "image": draw(st.sampled_from([None, "localhost/img:1", "registry.example.org/team/img@sha256:abc"])),
        "env": [f"{k}={v}" for k, v in draw(st.lists(st.tuples(_ENV_KEY, _FREE_TEXT), max_size=3))],
        "sbatch": draw(st.lists(_DIRECTIVE, max_size=3)),
    }


@given(raw_requests())
def test_request_survives_the_trip_through_its_options(raw: dict[str, Any]) -> None:
    r = JobRequest.from_options(raw)
    assert JobRequest.from_options(r.to_options()) == r


# --- the socket's requests (reliability item 6, F5) ----------------------------------------------


@pytest.mark.parametrize("workdir", ["/", "/etc", "/usr", "/proc", "/proc/self", "/sys/fs", "/dev"])
def test_system_directory_as_workdir_is_refused(workdir: str) -> None:
    with pytest.raises(ValidationError, match="is a system directory"):
        JobRequest.from_options({"script": f"{workdir.rstrip('/')}/passwd", "workdir": workdir})


def test_request_for_etc_passwd_from_the_root_directory_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        JobRequest.from_options({"script": "/etc/passwd", "workdir": "/"})
    assert info.value.field == "--workdir"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_FIELDS = st.sampled_from(["script", "workdir", "name", "nodes", "script_args", "gpus_per_node", "cpus_per_node",
                           "procs_per_node", "mem", "time", "partition", "env", "sbatch", "start_nodes",
                           "max_failures"])


@settings(max_examples=150)
@given(st.dictionaries(_FIELDS, _JSON, max_size=6))
def test_F5_any_json_request_is_accepted_or_refused_with_a_validation_error(raw: dict[str, Any]) -> None:
    """Whatever JSON arrives on the socket, the answer is a request or a ValidationError, never a
    crash of another kind (which the daemon would report as an internal error)."""
    base = {"script": SCRIPT, "workdir": WORKDIR}
    try:
        JobRequest.from_options({**base, **raw})
    except ValidationError:
        pass
