"""Run the long scenario tests (marker ``long``) and record the outcome, dated, in
benchmarks/results/long_tests.{md,json}: CI runs their short variants; this is the full run.

Usage (as root, after ``make setup``): ``.venv/bin/python scripts/long_tests.py [pytest args]``
(``make long``). The exit status is pytest's.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def outcomes(junit: Path) -> list[dict[str, object]]:
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcome = "failed" if failed else "skipped" if case.find("skipped") is not None else "passed"
        rows.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}",
                     "outcome": outcome, "seconds": round(float(case.get("time", 0.0)), 1)})
    return rows


def markdown(rows: list[dict[str, object]], when: str, commit: str, command: str) -> str:
    lines = ["# Long scenario tests on the local cluster", "",
             f"Run {when} at commit {commit}. Command: `{command}`. CI leaves these out (`-m \"not long\"`) "
             "and runs their short variants.", "", "| test | outcome | seconds |", "|---|---|---:|"]
    lines += [f"| `{r['test']}` | {r['outcome']} | {r['seconds']} |" for r in rows]
    passed = sum(r["outcome"] == "passed" for r in rows)
    lines += ["", f"{passed} of {len(rows)} passed.", ""]
    return "\n".join(lines)


def main(args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        rc = subprocess.call([sys.executable, "-m", "pytest", "-m", "long", f"--junitxml={junit}", *args], cwd=REPO)
        rows = outcomes(junit) if junit.exists() else []
    if not rows:
        print("long_tests: no test ran; nothing recorded", file=sys.stderr)
        return rc or 1
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "long_tests.json").write_text(json.dumps({"when": when, "commit": commit, "tests": rows}, indent=1) + "\n")
    (RESULTS / "long_tests.md").write_text(markdown(rows, when, commit, "make long"))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
