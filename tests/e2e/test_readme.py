"""The README's commands, run as a new user would run them (as root, from the checkout)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# `make demo` sets the local cluster up, then runs scripts/demo. In a chroot cluster of
# cluster/compat-cluster, which cluster/compat-suite has already set up, it runs scripts/demo alone.
DEMO = shlex.split(os.environ.get("HPCSCHED_TEST_DEMO_COMMAND", "make demo"))
NODE_PREFIX = os.environ.get("HPCSCHED_TEST_NODE_PREFIX", "node")
pytestmark = pytest.mark.cluster


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"^    (\S.*?)(?:\s+#.*)?$", section, flags=re.M)
    return block


def test_readme_has_exactly_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    assert quick_start_commands() == ["make demo", "make check"]
    ci = (REPO / ".ci" / "run").read_text()
    # .ci/run runs `make` on its default targets unless given others; check must be one of them
    default = re.search(r"^\[ \$# -gt 0 \] \|\| targets=\(([^)]*)\)$", ci, flags=re.M)
    assert default and "check" in default.group(1).split(), ".ci/run must call the README's test command"
    calls = re.findall(r"^\s*(?:exec )?make (.*)$", ci, flags=re.M)
    assert calls and all('"${targets[@]}"' in call for call in calls), calls


def test_make_demo_runs_the_two_node_job_and_every_rank_reports_the_sum() -> None:
    proc = subprocess.run(DEMO, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    ranks = re.findall(rf"allreduce rank=(\d) world=4 node=({NODE_PREFIX}\d+) sum=10 expected=10", proc.stdout)
    assert sorted(r for r, _ in ranks) == ["0", "1", "2", "3"], proc.stdout[-4000:]
    assert len({n for _, n in ranks}) == 2
    assert re.search(r"COMPLETED\s+2\s", proc.stdout), "status must show the job COMPLETED on 2 nodes"
