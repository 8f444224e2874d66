"""mkdocs hook: a docs page may link to a file of the repository outside docs/ (a benchmark's plot,
an example script) as ``../benchmarks/results/plot.png``, which works when the page is read in the
repository. For the site, such a link is pointed at a copy of the file under ``repo/`` in the site,
so it works there too and ``mkdocs build --strict`` still fails on a link to a file that does not
exist. Markdown files outside docs/ are left alone: the build reports a link to one as broken.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

# ](target) or ](target "title") of a Markdown link or image; the target has no spaces
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<rest>[^)]*)\)")
COPIES = "repo"


def repo_file(docs_dir: Path, page_uri: str, target: str) -> str | None:
    """TARGET's path in the repository when it leaves docs/ for an existing non-Markdown file."""
    if "://" in target or target.startswith(("/", "mailto:")) or target.endswith(".md"):
        return None
    inside_docs = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), target))
    if not inside_docs.startswith("../"):
        return None
    root = docs_dir.parent.resolve()
    path = (docs_dir / inside_docs).resolve()
    if not path.is_file() or root not in path.parents:
        return None
    return path.relative_to(root).as_posix()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    docs_dir = Path(config["docs_dir"])

    def point_at_copy(match: re.Match[str]) -> str:
        in_repo = repo_file(docs_dir, page.file.src_uri, match["target"])
        if in_repo is None:
            return match[0]
        copy = f"{COPIES}/{in_repo}"
        if files.get_file_from_path(copy) is None:
            files.append(File.generated(config, copy, abs_src_path=str(docs_dir.parent / in_repo)))
        relative = posixpath.relpath(copy, posixpath.dirname(page.file.src_uri) or ".")
        return f"]({relative}{match['rest']})"

    return LINK.sub(point_at_copy, markdown)
