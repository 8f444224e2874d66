"""Search spaces of ``hpcsched sweep`` and the trials they expand into (pure).

A sweep is a grid (``--grid NAME=V1,V2,...``: every combination once), a random search
(``--random N`` with ``--choice NAME=V1,V2,...``, ``--uniform NAME=LOW:HIGH`` and
``--log-uniform NAME=LOW:HIGH``: N samples drawn from ``random.Random(seed)``), or both. Combined,
every grid point is crossed with the same N random samples, so the grid's values are compared on
identical draws, and adding a grid parameter does not change the draws.

Each trial becomes ``--NAME VALUE`` arguments after the script's fixed arguments, grid parameters
first, then ``--choice``, ``--uniform`` and ``--log-uniform`` ones, each in the order given.
Nothing here reads a file or a clock.
"""

from __future__ import annotations

import collections
import itertools
import math
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hpcsched.errors import ValidationError

MAX_TRIALS = 1000  # the default of --max-trials
TRIALS_CEILING = 10_000  # the most --max-trials may allow: job names NAME-<index> stay within 64 characters
MAX_VALUE_LEN = 1000
SIGNIFICANT_DIGITS = 6  # of a drawn float
_PARAM = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# A trial's job is named NAME-<index>, and job names start with a letter or digit and have at most
# 64 characters, so a sweep name leaves room for "-9999".
_SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,58}")
_VALUES_FORM, _INTERVAL_FORM = "NAME=V1,V2,...", "NAME=LOW:HIGH"


@dataclass(frozen=True)
class Values:
    """A parameter that takes one of listed values: a grid axis or a ``--choice``."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Interval:
    """A float drawn uniformly from [low, high]; with ``log`` its logarithm is uniform. Drawn
    values keep 6 significant digits."""

    name: str
    low: float
    high: float
    log: bool = False

    def sample(self, rng: random.Random) -> str:
        uniform = rng.uniform
        value = math.exp(uniform(math.log(self.low), math.log(self.high))) if self.log else uniform(self.low, self.high)
        rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")  # short arguments; rounding may pass a bound
        return repr(min(max(rounded, self.low), self.high))


@dataclass(frozen=True)
class Trial:
    """One point of the search: its 0-based index, its parameter values as the script sees them,
    and the script's whole argument list (fixed arguments, then ``--NAME VALUE`` pairs)."""

    index: int
    params: Mapping[str, str]
    args: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "params": dict(self.params), "args": list(self.args)}


@dataclass(frozen=True)
class SweepSpec:
    grid: tuple[Values, ...] = ()
    choices: tuple[Values, ...] = ()
    intervals: tuple[Interval, ...] = ()
    samples: int = 0  # --random N; 0 for a grid alone
    seed: int = 0
    texts: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # (option, spec) as typed

    @property
    def grid_size(self) -> int:
        return math.prod(len(axis.values) for axis in self.grid)

    @property
    def size(self) -> int:
        """The number of trials, known without expanding them."""
        return self.grid_size * max(self.samples, 1)

    @classmethod
    def from_options(
        cls,
        *,
        grid: Sequence[str] = (),
        choices: Sequence[str] = (),
        uniform: Sequence[str] = (),
        log_uniform: Sequence[str] = (),
        samples: int = 0,
        seed: int = 0,
        max_trials: int = MAX_TRIALS,
    ) -> SweepSpec:
        """Validate the sweep options as typed; each error names the option and the spec."""
        texts = tuple(
            [("--grid", s) for s in grid]
            + [("--choice", s) for s in choices]
            + [("--uniform", s) for s in uniform]
            + [("--log-uniform", s) for s in log_uniform]
        )
        spec = cls(
            grid=tuple(parse_values("--grid", text) for text in grid),
            choices=tuple(parse_values("--choice", text) for text in choices),
            intervals=tuple(parse_interval("--uniform", text) for text in uniform)
            + tuple(parse_interval("--log-uniform", text) for text in log_uniform),
            samples=samples,
            seed=seed,
            texts=texts,
        )
        _check_unique(spec)
        _check_search(spec, max_trials)
        return spec

    def as_dict(self) -> dict[str, Any]:
        """The spec as a sweep record keeps it."""
        return {
            "grid": [{"name": a.name, "values": list(a.values)} for a in self.grid],
            "choice": [{"name": c.name, "values": list(c.values)} for c in self.choices],
            "uniform": [{"name": i.name, "low": i.low, "high": i.high} for i in self.intervals if not i.log],
            "log_uniform": [{"name": i.name, "low": i.low, "high": i.high} for i in self.intervals if i.log],
            "random": self.samples,
            "seed": self.seed,
        }


def expand(spec: SweepSpec, fixed_args: Sequence[str] = ()) -> tuple[Trial, ...]:
    """The trials in order: grid points in ``itertools.product`` order, and for each of them the
    random samples in the order drawn. The same spec and seed always give the same trials."""
    fixed = tuple(fixed_args)
    _check_fixed_args(spec, fixed)
    points = itertools.product(*(axis.values for axis in spec.grid))  # one empty point without a grid
    names = [axis.name for axis in spec.grid]
    draws = _draws(spec)
    trials: list[Trial] = []
    for point in points:
        for draw in draws:
            params = {**dict(zip(names, point, strict=True)), **draw}
            trials.append(Trial(len(trials), MappingProxyType(params), fixed + _as_args(params)))
    return tuple(trials)


def parse_values(option: str, text: str) -> Values:
    """``NAME=V1,V2,...`` of ``--grid`` or ``--choice``: distinct, non-empty values."""
    name, rest = _split(option, text, ("--grid", "--choice"), _VALUES_FORM)
    values = tuple(rest.split(","))
    for number, value in enumerate(values, 1):
        if not value:
            raise _refused(option, text, f"value {number} is empty")
        if any(c in value for c in "\x00\n\r"):
            raise _refused(option, text, f"value {number} contains a newline or NUL character")
        if len(value) > MAX_VALUE_LEN:
            raise _refused(option, text, f"value {number} is longer than {MAX_VALUE_LEN} characters")
    repeated = [v for v, count in collections.Counter(values).items() if count > 1]
    if repeated:
        raise _refused(option, text, f"value {repeated[0]!r} is listed twice")
    return Values(name, values)


def parse_interval(option: str, text: str) -> Interval:
    """``NAME=LOW:HIGH`` of ``--uniform`` or ``--log-uniform``: finite numbers, LOW < HIGH, and
    0 < LOW for a log-uniform range."""
    name, rest = _split(option, text, ("--uniform", "--log-uniform"), _INTERVAL_FORM)
    low_text, sep, high_text = rest.partition(":")
    if not sep:
        raise _refused(option, text, f"expected {_INTERVAL_FORM}")
    low, high = _number(option, text, "LOW", low_text), _number(option, text, "HIGH", high_text)
    if not low < high:
        raise _refused(option, text, f"LOW ({low!r}) must be below HIGH ({high!r})")
    log = option == "--log-uniform"
    if log and low <= 0:
        raise _refused(option, text, f"LOW ({low!r}) must be above 0 for a log-uniform range")
    return Interval(name, low, high, log)


def parse_sweep_name(text: str, field: str = "--name") -> str:
    if not _SWEEP_NAME.fullmatch(text):
        raise ValidationError(
            field,
            f"{text!r} is not allowed: use 1-59 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(trial jobs are named NAME-<index>)",
        )
    return text


def default_sweep_name(now: float) -> str:
    return time.strftime("sweep-%Y%m%d-%H%M%S", time.localtime(now))


def job_name(sweep: str, index: int) -> str:
    """The hpcsched job name of a trial."""
    return f"{sweep}-{index}"


def _refused(option: str, text: str, why: str) -> ValidationError:
    return ValidationError(option, f"{text!r}: {why}")


def _split(option: str, text: str, options: tuple[str, ...], form: str) -> tuple[str, str]:
    """NAME and what follows its '='; NAME must be an option name the script can take."""
    if option not in options:
        raise ValueError(f"{option} is not one of {options}")
    name, sep, rest = text.partition("=")
    if not sep:
        raise _refused(option, text, f"expected {form}")
    if not _PARAM.fullmatch(name):
        raise _refused(
            option, text, f"{name!r} is not an option name: use up to 64 letters, digits, '-' or '_', starting with a letter"
        )
    return name, rest


def _number(option: str, text: str, what: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _refused(option, text, f"{what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise _refused(option, text, f"{what} {value!r} is not a finite number")
    return number


def _check_unique(spec: SweepSpec) -> None:
    first: dict[str, tuple[str, str]] = {}
    for (option, text), param in zip(spec.texts, _params(spec), strict=True):
        if param.name in first:
            earlier = first[param.name]
            raise _refused(option, text, f"{param.name} is already searched by {earlier[0]} {earlier[1]!r}")
        first[param.name] = (option, text)


def _check_search(spec: SweepSpec, max_trials: int) -> None:
    if not 1 <= max_trials <= TRIALS_CEILING:
        raise ValidationError("--max-trials", f"must be between 1 and {TRIALS_CEILING}, got {max_trials}")
    random_texts = [(o, t) for o, t in spec.texts if o != "--grid"]
    if spec.samples < 0:
        raise ValidationError("--random", f"expected a number of random trials of at least 1, got {spec.samples}")
    if spec.samples and not random_texts:
        raise ValidationError(
            "--random", f"{spec.samples} random trials need a --choice, --uniform or --log-uniform parameter to draw"
        )
    if random_texts and not spec.samples:
        option, text = random_texts[0]
        raise _refused(option, text, "random parameters are drawn only with --random N")
    if not spec.texts:
        raise ValidationError(
            "--grid", "nothing to search: give --grid NAME=V1,V2,..., or --random N with --choice, --uniform or --log-uniform"
        )
    if spec.size > max_trials:
        grid_texts = [t for o, t in spec.texts if o == "--grid"]
        factors = [f"{len(a.values)} values of --grid {t!r}" for a, t in zip(spec.grid, grid_texts, strict=True)]
        factors += [f"--random {spec.samples}"] if spec.samples else []
        raise ValidationError("--max-trials", f"the sweep has {spec.size} trials ({' x '.join(factors)}), more than {max_trials}")


def _check_fixed_args(spec: SweepSpec, fixed: Iterable[str]) -> None:
    """A parameter also among the fixed arguments would reach the script twice."""
    searched = {f"--{p.name}" for p in _params(spec)}
    for arg in fixed:
        option = arg.split("=", 1)[0]
        if option in searched:
            raise ValidationError(
                "SCRIPT_ARGS", f"{arg!r} after -- sets {option}, which the sweep searches; give it in one place"
            )


def _params(spec: SweepSpec) -> tuple[Values | Interval, ...]:
    """Every parameter, in the order of ``spec.texts``."""
    return (*spec.grid, *spec.choices, *spec.intervals)


def _draws(spec: SweepSpec) -> list[dict[str, str]]:
    """The random samples, drawn in a fixed order from one seeded generator."""
    if not spec.samples:
        return [{}]
    rng = random.Random(spec.seed)
    draws = []
    for _ in range(spec.samples):
        draw = {c.name: rng.choice(c.values) for c in spec.choices}
        draw.update({i.name: i.sample(rng) for i in spec.intervals})
        draws.append(draw)
    return draws


def _as_args(params: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(arg for name, value in params.items() for arg in (f"--{name}", value))
