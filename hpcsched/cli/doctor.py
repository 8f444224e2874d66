"""``hpcsched doctor``: a checklist of everything hpcsched needs on this cluster, with fixes."""

from __future__ import annotations

import click

from hpcsched.cli.common import print_json, reports_errors, settings
from hpcsched.doctor.findings import Finding, exit_status
from hpcsched.doctor.probes import Host, checklist

HELP = {"help_option_names": ["-h", "--help"]}
MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}

EPILOG = """\b
Checks, in the order to fix them:
  slurm        Slurm's commands on PATH, and their version (sinfo --version)
  accounting   sacct answers (hpcsched reads final states and step times from it)
  subids       your ranges in /etc/subuid and /etc/subgid (rootless Podman needs them)
  podman       rootless Podman works on a compute node (srun -N1 ... podman info)
  storage      Podman's graph root there is on node-local disk, not NFS/GPFS/Lustre
  image        the configured image is in Podman's storage on that node
  jobs_dir     the jobs directory is visible from that node
  state_dir    the state directory is on a local disk of this login node
  cron         cron runs your rebalance entry (or `coordinator`: the site's
               coordinator answers, when coordinator_socket is set)
  gpus         GPUs are visible as Slurm allocates them (skipped when the
               partition has none)
\b
The node checks run one small step (1 task, 1 core, 256 MiB) with your partition, account and
qos settings; it gives up when no node is free within --wait seconds, and says so.
\b
Exit status: 0 when no check fails (warnings allowed), 1 when one fails, 2 for a bad
configuration. docs/doctor.md explains each check and its fixes.
\b
Examples:
  hpcsched doctor
  hpcsched doctor --json | jq '.[] | select(.status != "ok")'
  HPCSCHED_IMAGE=localhost/other:1 hpcsched doctor --wait 300
"""


@click.command(epilog=EPILOG, context_settings=HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the checklist as JSON: a list of {name, status, found, fix}.")
@click.option("--wait", "wait_s", type=click.IntRange(1, 3600), default=60, show_default=True, metavar="SECONDS",
              help="How long the node checks wait for a free node.")
@click.option("--mount-table", default="/proc/self/mounts", hidden=True,
              help="Read this login node's mounts from FILE (to see what doctor says about another layout).")
@reports_errors
def doctor(as_json: bool, wait_s: int, mount_table: str) -> None:
    """Check that Slurm, Podman, the image and your directories are ready for hpcsched.

    Prints one line per check: ok, WARN, FAIL or skip, what was found, and for anything not ok
    how to fix it.
    """
    findings = checklist(settings(), Host(mount_table=mount_table), float(wait_s))
    if as_json:
        print_json([f.to_json() for f in findings])
    else:
        for finding in findings:
            click.echo(line(finding))
    raise SystemExit(exit_status(findings))


def line(finding: Finding) -> str:
    text = f"{MARKS[finding.status]}  {finding.name:<11} {finding.found}"
    return text + (f"\n      {'':<11} fix: {finding.fix}" if finding.fix else "")
