"""The diff shown in examples/README.md is made of real lines of the two example scripts."""

from __future__ import annotations

import re
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_readme_diff_matches_the_scripts() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    match = re.search(r"```diff\n(.*?)```", readme, re.S)
    assert match is not None
    plain = (EXAMPLES / "plain_ddp.py").read_text().splitlines()
    elastic = (EXAMPLES / "digits_cnn.py").read_text().splitlines()
    lines = [line for line in match.group(1).splitlines() if line and not line.startswith("@@")]
    assert len(lines) > 20
    for line in lines:
        kind, text = line[0], line[1:]
        if kind in "- ":
            assert text in plain, f"not in plain_ddp.py: {text!r}"
        if kind in "+ ":
            assert text in elastic, f"not in digits_cnn.py: {text!r}"
