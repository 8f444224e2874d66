"""``hpcsched run --dry-run`` on the local cluster shows what the job then is: its directory, its
batch script and the ``podman run`` line each node's launcher executes (issue 14, item 7)."""

from __future__ import annotations

import json
import re
import shlex

from conftest import UserSession

OPTIONS = ("--nodes", "1", "--time", "0:05:00", "--env", "SEED=3", "-p", "wide")  # debug is the busier one
PLACEHOLDER = re.compile(r"<[^<>]+>")


def matches(shown: str, actual: str) -> bool:
    """``actual`` is ``shown`` with each <placeholder> replaced by some value."""
    pattern = ".+?".join(re.escape(part) for part in PLACEHOLDER.split(shown))
    return re.fullmatch(pattern, actual, re.DOTALL) is not None


def test_dry_run_shows_the_job_directory_script_and_podman_line_the_job_then_has(session: UserSession) -> None:
    script = session.write("train.py", "print('trained')\n")
    args = (*OPTIONS, str(script), "--", "--data dir", "it's")
    shown = json.loads(session.hs("run", "--dry-run", "--json", *args).stdout)
    job = session.run_job(*args)
    info = session.wait(job, timeout=600)  # the shared cluster may be busy
    assert info["state"] == "COMPLETED", info

    fill = {"<job id>": str(job)}
    job_dir = info["job_dir"]
    assert shown["job_dir"].replace("<job id>", str(job)) == job_dir
    with open(f"{job_dir}/batch.sh", encoding="utf-8") as f:  # quoting aside: a placeholder has spaces
        assert matches(shown["batch_script"].replace("<job id>", str(job)).replace("'", ""), f.read().replace("'", ""))
    ran = [line.split(": ", 1)[1] for line in session.logs(job).splitlines()
           if line.startswith("hpcsched launcher on ") and ": podman " in line]
    assert len(ran) == 1, session.logs(job)
    actual, planned = shlex.split(ran[0]), shown["node_commands"][0]["podman_run"]
    assert len(actual) == len(planned)
    for want, got in zip(planned, actual, strict=True):
        for placeholder, value in fill.items():
            want = want.replace(placeholder, value)
        assert matches(want, got), (want, got)
    assert actual[-3:] == [str(script), "--data dir", "it's"]
