"""Verdicts on what the login node shows: Slurm's commands, accounting, the subordinate id
ranges, the state directory's file system, and what resizes jobs regularly (cron or the site
coordinator). Pure: each takes captured text and returns a :class:`~.findings.Finding`."""

from __future__ import annotations

from collections.abc import Sequence

from hpcsched.doctor.findings import Finding, fail, ok, warn
from hpcsched.launcher.storage import NETWORK_FS, file_system_of

# Fewer subordinate ids than this, and images whose files belong to higher uids fail to unpack.
FULL_RANGE = 65536
SUBID_FIX = ("ask an administrator to give you ranges on the login and compute nodes, e.g. "
             "`usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (rootless Podman maps "
             "the container's users to them; sites that keep them in a directory service: `getsubids {user}`)")


def slurm_commands(version: str | None, error: str | None, missing: Sequence[str]) -> Finding:
    """``sinfo --version``'s answer (or its error) and the Slurm commands not found on PATH."""
    name = "slurm"
    fix = "load the site's Slurm environment (e.g. `module load slurm`) or install Slurm's client commands"
    if missing:
        return fail(name, f"not found on PATH: {', '.join(missing)}", fix)
    if error is not None or not version:
        return fail(name, f"sinfo --version failed: {error or 'no output'}", fix)
    return ok(name, f"{version.strip()}; sbatch, squeue, sacct, scontrol, sinfo, scancel and srun on PATH")


def accounting(error: str | None) -> Finding:
    name = "accounting"
    if error is None:
        return ok(name, "sacct answers")
    if "accounting storage is disabled" in error.lower():
        return fail(name, f"sacct: {error}", "hpcsched reads final job states and step times from Slurm's "
                    "accounting: ask the administrators to enable it (AccountingStorageType=accounting_storage/slurmdbd)")
    return fail(name, f"sacct failed: {error}", "sacct must answer on this login node: check that slurmdbd runs "
                "and that slurmctld reaches it (`sacctmgr show cluster`)")


def subordinate_ids(user: str, uid: int, subuid: str | None, subgid: str | None) -> Finding:
    """The user's ranges in /etc/subuid and /etc/subgid (texts, None when the file is missing)."""
    name = "subids"
    counts = {}
    for path, text in (("/etc/subuid", subuid), ("/etc/subgid", subgid)):
        count = id_count(text or "", user, uid)
        if count == 0:
            where = "does not exist" if text is None else f"has no range for {user}"
            return fail(name, f"{path} {where}", SUBID_FIX.format(user=user))
        counts[path] = count
    smallest = min(counts.values())
    found = f"{user}: {counts['/etc/subuid']} subordinate uids, {counts['/etc/subgid']} gids"
    if smallest < FULL_RANGE:
        return warn(name, found + f" (fewer than {FULL_RANGE}: images with files of higher uids fail to unpack)",
                    SUBID_FIX.format(user=user))
    return ok(name, found)


def id_count(text: str, user: str, uid: int) -> int:
    """How many subordinate ids ``text`` (/etc/subuid format: name-or-uid:start:count) grants."""
    total = 0
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit():
            total += int(parts[2])
    return total


def state_dir(path: str, existing: str, mounts: list[tuple[str, str]]) -> Finding:
    """The state directory ``path`` (``existing``: it or its nearest existing parent) on the
    file systems of the mount table ``mounts``."""
    name = "state_dir"
    point, fstype = file_system_of(existing, mounts)
    found = f"{path} is on {fstype} (mounted at {point})"
    if fstype in NETWORK_FS:
        return warn(name, found + ", a network file system", "SQLite is not safe there and each login node needs "
                    "its own daemon: set state_dir to a local disk, e.g. `state_dir = \"/tmp/$USER/hpcsched\"` in "
                    "~/.config/hpcsched/config.toml or HPCSCHED_STATE_DIR (docs/configuration.md)")
    return ok(name, found)


def regular_passes(coordinator: str, reach_error: str | None, cron_running: bool | None,
                   cron_entry: bool) -> Finding:
    """What sizes elastic jobs regularly: the site coordinator when one is configured (``reach_error``:
    why its socket did not answer), else cron running the user's rebalance entry."""
    if coordinator:
        name = "coordinator"
        if reach_error is None:
            return ok(name, f"the site coordinator answers at {coordinator}")
        return fail(name, f"cannot reach the site coordinator at {coordinator}: {reach_error}",
                    "ask the site's staff whether it runs; until it does your elastic jobs are not resized "
                    "(coordinator_socket comes from the site's file: `hpcsched config show`)")
    name = "cron"
    entry = "your crontab has hpcsched's rebalance entry" if cron_entry else "no rebalance entry in your crontab"
    if cron_running:
        return ok(name, f"cron runs; {entry}" + ("" if cron_entry else " (optional: `hpcsched cron install`)"))
    seen = "no cron daemon runs on this host" if cron_running is False else "cannot see whether cron runs here"
    if cron_entry:
        return fail(name, f"{seen}, but {entry}: it never runs",
                    "ask the administrators to run cron on the login nodes, or `hpcsched cron remove`")
    return warn(name, f"{seen}: `hpcsched cron install` would have no effect",
                "only regular rebalance passes grow elastic jobs into free nodes; the daemon still shrinks them "
                "for your waiting jobs by itself. Ask the administrators to run cron on the login nodes")
