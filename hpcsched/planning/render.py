"""Rendering of ``slurm_templates/*.j2`` into batch script text (pure).

Strict undefined variables: a template that names a value the planner did not give fails loudly.
The ``q`` filter shell-quotes a value; every path and free-text value goes through it, while the
``#SBATCH`` lines only ever receive values the request validated to a safe character set.
"""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Any

import jinja2


def _template_dir() -> Path:
    """The repository's slurm_templates/ (a checkout), else the copy an install puts under
    ``<prefix>/share/hpcsched/slurm_templates``."""
    checkout = Path(__file__).resolve().parent.parent.parent / "slurm_templates"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "hpcsched" / "slurm_templates"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)
