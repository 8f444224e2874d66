"""Search specs of ``hpcsched sweep`` and their expansion into trials (pure)."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcsched.errors import ValidationError
from hpcsched.planning.sweep import (
    SweepSpec,
    default_sweep_name,
    expand,
    job_name,
    parse_interval,
    parse_sweep_name,
    parse_values,
)


def spec(**options: Any) -> SweepSpec:
    return SweepSpec.from_options(**options)


def refused(**options: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        SweepSpec.from_options(**options)
    return info.value


# --- grid ---------------------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_in_order_after_the_fixed_args() -> None:
    trials = expand(spec(grid=["lr=0.1,0.01,0.001", "batch-size=32,64"]), ["--epochs", "10"])
    assert [t.index for t in trials] == list(range(6))
    assert [dict(t.params) for t in trials[:3]] == [
        {"lr": "0.1", "batch-size": "32"},
        {"lr": "0.1", "batch-size": "64"},
        {"lr": "0.01", "batch-size": "32"},
    ]
    assert trials[5].args == ("--epochs", "10", "--lr", "0.001", "--batch-size", "64")


def test_values_are_passed_as_typed_with_spaces_and_shell_characters() -> None:
    (trial,) = expand(spec(grid=["note=a b;$(rm -rf ~)"]))
    assert trial.args == ("--note", "a b;$(rm -rf ~)")


_NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,6}", fullmatch=True)
_VALUES = st.lists(st.from_regex(r"[A-Za-z0-9.+-]{1,5}", fullmatch=True), min_size=1, max_size=4, unique=True)


@given(st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=4))
def test_grid_size_is_the_product_of_value_counts_and_each_combination_comes_once(axes: dict[str, list[str]]) -> None:
    sweep = spec(grid=[f"{name}={','.join(values)}" for name, values in axes.items()])
    trials = expand(sweep, ["--fixed"])
    assert len(trials) == sweep.size == math.prod(len(v) for v in axes.values())
    combos = [tuple(t.params[name] for name in axes) for t in trials]
    assert sorted(combos) == sorted(itertools.product(*axes.values()))
    for t in trials:
        assert list(t.params) == list(axes)
        assert t.args == ("--fixed", *(a for name in axes for a in (f"--{name}", t.params[name])))


# --- random -------------------------------------------------------------------------------------


RANDOM = {"samples": 20, "choices": ["opt=sgd,adam,lamb"], "uniform": ["dropout=0:0.5"], "log_uniform": ["lr=1e-5:1e-1"]}


def test_random_trials_are_the_same_for_the_same_seed_and_differ_for_another() -> None:
    first, again = expand(spec(**RANDOM, seed=7)), expand(spec(**RANDOM, seed=7))
    assert first == again
    assert [t.params for t in first] != [t.params for t in expand(spec(**RANDOM, seed=8))]
    assert len(first) == 20 and [list(t.params) for t in first] == [["opt", "dropout", "lr"]] * 20


@given(st.integers(min_value=0, max_value=2**32), st.floats(1e-9, 1e3), st.floats(1.0001, 1e4))
def test_drawn_values_stay_within_their_bounds(seed: int, low: float, factor: float) -> None:
    high = low * factor
    trials = expand(
        spec(samples=5, seed=seed, uniform=[f"u={low!r}:{high!r}"], log_uniform=[f"g={low!r}:{high!r}"], choices=["c=x,y"])
    )
    for t in trials:
        assert low <= float(t.params["u"]) <= high and low <= float(t.params["g"]) <= high
        assert t.params["c"] in ("x", "y")


def test_log_uniform_spreads_over_orders_of_magnitude() -> None:
    values = [float(t.params["lr"]) for t in expand(spec(samples=200, log_uniform=["lr=1e-6:1"]))]
    below = sum(v < 1e-3 for v in values)
    assert 70 < below < 130  # half the log range lies below 1e-3


def test_grid_and_random_cross_every_grid_point_with_the_same_draws() -> None:
    trials = expand(spec(grid=["width=64,128"], samples=3, log_uniform=["lr=1e-4:1e-2"], seed=1))
    assert [t.params["width"] for t in trials] == ["64"] * 3 + ["128"] * 3
    assert [t.params["lr"] for t in trials[:3]] == [t.params["lr"] for t in trials[3:]]
    alone = expand(spec(samples=3, log_uniform=["lr=1e-4:1e-2"], seed=1))
    assert [t.params["lr"] for t in alone] == [t.params["lr"] for t in trials[:3]]


# --- refusals: each names the option and the spec -------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "text"),
    [
        ({"grid": ["lr"]}, "--grid", "'lr': expected NAME=V1,V2,..."),
        ({"grid": ["1lr=1,2"]}, "--grid", "'1lr=1,2': '1lr' is not an option name"),
        ({"grid": ["l.r=1,2"]}, "--grid", "'l.r' is not an option name"),
        ({"grid": ["=1,2"]}, "--grid", "'' is not an option name"),
        ({"grid": ["lr="]}, "--grid", "'lr=': value 1 is empty"),
        ({"grid": ["lr=0.1,,2"]}, "--grid", "'lr=0.1,,2': value 2 is empty"),
        ({"grid": ["lr=0.1,0.1"]}, "--grid", "value '0.1' is listed twice"),
        ({"grid": ["lr=a\nb"]}, "--grid", "newline"),
        ({"grid": ["lr=1,2", "lr=3"]}, "--grid", "'lr=3': lr is already searched by --grid 'lr=1,2'"),
        ({"grid": ["lr=1,2"], "samples": 2, "uniform": ["lr=0:1"]}, "--uniform", "already searched by --grid"),
        ({"samples": 2, "uniform": ["lr=1:0"]}, "--uniform", "'lr=1:0': LOW (1.0) must be below HIGH (0.0)"),
        ({"samples": 2, "uniform": ["lr=0.1"]}, "--uniform", "'lr=0.1': expected NAME=LOW:HIGH"),
        ({"samples": 2, "uniform": ["lr=a:1"]}, "--uniform", "LOW 'a' is not a number"),
        ({"samples": 2, "uniform": ["lr=0:inf"]}, "--uniform", "HIGH 'inf' is not a finite number"),
        ({"samples": 2, "uniform": ["lr=0:1:2"]}, "--uniform", "HIGH '1:2' is not a number"),
        ({"samples": 2, "log_uniform": ["lr=0:1"]}, "--log-uniform", "'lr=0:1': LOW (0.0) must be above 0"),
        ({"choices": ["opt=sgd,adam"]}, "--choice", "'opt=sgd,adam': random parameters are drawn only with --random"),
        ({"grid": ["lr=1,2"], "samples": 3}, "--random", "need a --choice, --uniform or --log-uniform"),
        ({"samples": -1, "choices": ["a=1"]}, "--random", "at least 1, got -1"),
        ({}, "--grid", "nothing to search"),
        (
            {"grid": ["a=1,2,3", "b=1,2"], "max_trials": 5},
            "--max-trials",
            "6 trials (3 values of --grid 'a=1,2,3' x 2 values of --grid 'b=1,2'), more than 5",
        ),
        ({"grid": ["a=1,2"], "samples": 600, "choices": ["c=1"]}, "--max-trials", "1200 trials"),
        ({"grid": ["a=1"], "max_trials": 0}, "--max-trials", "between 1 and 10000"),
    ],
)
def test_bad_specs_are_refused_naming_the_option_and_the_spec(options: dict[str, Any], field: str, text: str) -> None:
    error = refused(**options)
    assert error.field == field
    assert text in str(error), str(error)


def test_a_huge_grid_is_refused_before_it_is_expanded() -> None:
    error = refused(grid=[f"p{i}=" + ",".join(str(v) for v in range(100)) for i in range(10)])
    assert "100000000000000000000 trials" in str(error)


@pytest.mark.parametrize("fixed", [["--lr", "0.1"], ["--lr=0.1"]])
def test_a_parameter_also_given_after_the_double_dash_is_refused(fixed: list[str]) -> None:
    with pytest.raises(ValidationError, match="sets --lr, which the sweep searches") as info:
        expand(spec(grid=["lr=1,2"]), fixed)
    assert info.value.field == "SCRIPT_ARGS"


def test_a_fixed_argument_that_only_starts_like_a_parameter_is_kept() -> None:
    assert expand(spec(grid=["lr=1"]), ["--lr-decay", "0.5"])[0].args == ("--lr-decay", "0.5", "--lr", "1")


def test_parsers_know_only_the_sweep_options() -> None:
    with pytest.raises(ValueError):
        parse_values("--nodes", "a=1")
    with pytest.raises(ValueError):
        parse_interval("--grid", "a=1:2")


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lr-search", "a", "v1.2_x", "9", "x" * 59])
def test_sweep_names_that_are_allowed(name: str) -> None:
    assert parse_sweep_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "../etc", "a/b", "-x", "_x", "a b", "x" * 60, "é"])
def test_sweep_names_that_are_refused_name_the_option(name: str) -> None:
    with pytest.raises(ValidationError, match=r"^--name: .* is not allowed"):
        parse_sweep_name(name)


def test_default_name_is_a_valid_sweep_name_with_the_time_and_job_names_add_the_index() -> None:
    name = default_sweep_name(1_800_000_000.0)
    assert re.fullmatch(r"sweep-20\d{6}-\d{6}", name) and parse_sweep_name(name) == name
    assert job_name("lr-search", 12) == "lr-search-12"


def test_spec_as_a_record_keeps_it() -> None:
    sweep = spec(grid=["w=1,2"], samples=2, choices=["c=a"], uniform=["u=0:1"], log_uniform=["g=1:2"], seed=3)
    assert sweep.as_dict() == {
        "grid": [{"name": "w", "values": ["1", "2"]}],
        "choice": [{"name": "c", "values": ["a"]}],
        "uniform": [{"name": "u", "low": 0.0, "high": 1.0}],
        "log_uniform": [{"name": "g", "low": 1.0, "high": 2.0}],
        "random": 2,
        "seed": 3,
    }
    first = expand(sweep)[0]
    assert first.as_dict() == {"index": 0, "params": dict(first.params), "args": list(first.args)}
