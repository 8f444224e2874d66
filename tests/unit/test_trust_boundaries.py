"""G6: nothing outside the runtime library (which runs inside the user's own job) may unpickle:
the daemon, the CLI, the allocator and the report read JSON only, so a checkpoint crafted to run
code when loaded is never loaded by them. Checked on the source, so a new import cannot slip in."""

from __future__ import annotations

import ast
from pathlib import Path

import hpcsched

PACKAGE = Path(hpcsched.__file__).parent
UNPICKLERS = {"pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}


def unpickling_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in UNPICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
            found.append(node.module or "")
        elif isinstance(node, ast.Attribute) and node.attr == "load" and isinstance(node.value, ast.Name) \
                and node.value.id == "torch":
            found.append("torch.load")
    return found


def test_G6_only_the_runtime_library_loads_pickles() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "runtime":
            continue
        if uses := unpickling_uses(path):
            offenders[str(relative)] = uses
    assert offenders == {}


def test_the_check_sees_an_unpickler(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import torch\nfrom pickle import loads\nx = torch.load('f')\n")
    assert unpickling_uses(sample) == ["pickle", "torch.load"]
