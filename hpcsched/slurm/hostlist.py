"""Slurm host lists (``node[1-3,7],gpu[01-02]``) expanded to node names (pure)."""

from __future__ import annotations

import re

BRACKET = re.compile(r"\[([^\]]*)\]")


def expand(hostlist: str) -> list[str]:
    """Node names in Slurm's order; zero padding of ranges is kept (``gpu[08-10]``)."""
    names: list[str] = []
    for item in _top_level_items(hostlist.strip()):
        names.extend(_expand_item(item))
    return names


def _top_level_items(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        current += ch
    items.append(current)
    return [i for i in items if i]


def _expand_item(item: str) -> list[str]:
    match = BRACKET.search(item)
    if match is None:
        return [item]
    head, tail = item[: match.start()], item[match.end():]
    return [head + n + rest for n in _numbers(match.group(1)) for rest in _expand_item(tail)]


def _numbers(ranges: str) -> list[str]:
    out = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if not high:
            out.append(low)
            continue
        if not (low.isdigit() and high.isdigit()):
            out.append(part)
            continue
        width = len(low)
        out.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return out
