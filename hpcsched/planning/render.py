"""Rendering of ``slurm_templates/*.j2`` into batch script text (pure).

Strict undefined variables: a template that names a value the planner did not give fails loudly.
The ``q`` filter shell-quotes a value; every path and free-text value goes through it, while the
``#SBATCH`` lines only ever receive values the request validated to a safe character set.
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).resolve().parent.parent.parent / "slurm_templates"


def _template_dir() -> Path:
    """Templates live in the repository's slurm_templates/ (installed as package data too)."""
    packaged = Path(__file__).resolve().parent.parent / "slurm_templates"
    return packaged if packaged.is_dir() else TEMPLATE_DIR


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
