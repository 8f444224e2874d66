"""Audit: every measured figure the docs quote, checked against the results file it comes from.

A paragraph (or table) of README.md or docs/*.md that names a benchmark (``benchmarks/<name>.py``
or ``results/<name>.md``) or says "measured" is a source of figures: each number with a unit
(s, ms, min, x, %, pp, GiB, MiB, ...) in it is checked against the numbers of the results files
it names, to the precision the doc quotes. A figure is "reproduces" when some number in those
files rounds to it, "stale" when none does, and "no results file" when the paragraph names none
that exists.

Run:  .venv/bin/python benchmarks/figures.py [--all]   (exit 1 when a figure does not reproduce)
Writes benchmarks/results/figures.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
UNITS = r"(?:ms|µs|s|min|h|x|×|%|pp|GiB|MiB|KiB|GB|MB|jobs/s|req/s)"
FIGURE = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?" + UNITS + r"(?![\w])")
SOURCE = re.compile(r"(?:benchmarks/|results/)([a-z_0-9-]+)\.(?:py|md|json)")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


@dataclass(frozen=True)
class Figure:
    doc: str
    line: int
    text: str
    sources: tuple[str, ...]
    verdict: str


def paragraphs(text: str) -> list[tuple[int, str]]:
    """Blocks separated by blank lines, with the number of their first line."""
    blocks: list[tuple[int, str]] = []
    start, lines = 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            start = start or number
            lines.append(line)
        elif lines:
            blocks.append((start, "\n".join(lines)))
            start, lines = 0, []
    if lines:
        blocks.append((start, "\n".join(lines)))
    return blocks


def result_numbers(name: str) -> list[float] | None:
    files = [RESULTS / f"{name}.md", RESULTS / f"{name}.json"]
    texts = [f.read_text() for f in files if f.exists()]
    if not texts:
        return None
    return [float(n) for t in texts for n in NUMBER.findall(t.replace(",", ""))]


def reproduces(quoted: str, numbers: list[float], unit: str = "") -> bool:
    """Some number rounds to the quoted one: as it is, as a fraction quoted in percent, or (for
    milliseconds) as seconds."""
    value = float(quoted.replace(",", ""))
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    half = 0.5 * 10**-decimals + 1e-9
    scales = (1, 100, 1000) if unit == "ms" else (1, 100)
    return any(abs(n * k - value) <= half for n in numbers for k in scales)


def verdict(quoted: str, numbers: list[float], unit: str = "") -> str:
    if not numbers:
        return "no results file"
    return "reproduces" if reproduces(quoted, numbers, unit) else "stale"


def audit_block(doc: str, start: int, block: str) -> list[Figure]:
    sources = tuple(dict.fromkeys(SOURCE.findall(block)))
    if not sources and "measured" not in block.lower():
        return []
    known = {s: result_numbers(s) for s in sources}
    numbers = [n for ns in known.values() if ns for n in ns]
    found = []
    for offset, line in enumerate(block.splitlines()):
        for match in FIGURE.finditer(line):
            unit = match.group(0)[len(match.group(1)):].strip()
            found.append(Figure(doc, start + offset, match.group(0), sources, verdict(match.group(1), numbers, unit)))
    return found


def audit(docs: list[Path]) -> list[Figure]:
    return [f for d in docs for start, block in paragraphs(d.read_text())
            for f in audit_block(str(d.relative_to(REPO)), start, block)]  # fmt: skip


def report(figures: list[Figure], show_all: bool) -> str:
    counts = {v: sum(f.verdict == v for f in figures) for v in ("reproduces", "stale", "no results file")}
    rows = [f for f in figures if show_all or f.verdict != "reproduces"]
    return (
        "# Figures quoted in the docs, checked against benchmark results\n\n"
        "Regenerate: `.venv/bin/python benchmarks/figures.py` (add `--all` to list the ones that reproduce).\n\n"
        + ", ".join(f"{n} {v}" for v, n in counts.items()) + "\n\n"
        "| doc:line | figure | results named | verdict |\n|---|---|---|---|\n"
        + "".join(f"| {f.doc}:{f.line} | {f.text} | {', '.join(f.sources) or '-'} | {f.verdict} |\n" for f in rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list the figures that reproduce too")
    args = parser.parse_args()
    figures = audit([REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    table = report(figures, args.all)
    (RESULTS / "figures.md").write_text(table)
    print(table)
    sys.exit(1 if any(f.verdict != "reproduces" for f in figures) else 0)


if __name__ == "__main__":
    main()
