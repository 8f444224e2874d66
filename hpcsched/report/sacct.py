"""Runs from ``sacct --json -D`` with the fields a report needs beyond :class:`SlurmJobRecord`.

:func:`hpcsched.slurm.parse.parse_sacct` gives state, exit code, comment and times; a report also
needs the allocated TRES (CPUs, GPUs, nodes) and the end time of runs that Slurm requeued or
resized, which that record drops because such a run is not in a final state. This parser reads
them from the same JSON document, choosing the field readers by the schema it detects (v0.0.38 in
Slurm 22.05, v0.0.39+ later), and pairs them with the records in document order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hpcsched.report.values import SlurmRun
from hpcsched.slurm.parse import Schema, SlurmJobRecord, SlurmParseError, detect_schema


def merge_runs(records: Sequence[SlurmJobRecord], text: str) -> tuple[SlurmRun, ...]:
    """One :class:`SlurmRun` per record; ``text`` is the sacct output the records were parsed from."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SlurmParseError(f"not JSON: {e}") from None
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not isinstance(jobs, list) or len(jobs) != len(records):
        raise SlurmParseError("sacct's job list does not match its parsed records")
    schema = detect_schema(doc.get("meta") or {})
    return tuple(_run(schema, record, raw) for record, raw in zip(records, jobs, strict=True))


def _run(schema: Schema, record: SlurmJobRecord, raw: dict[str, Any]) -> SlurmRun:
    started = record.start_time is not None and (record.node_count > 0 or bool(record.node_list))
    end = schema.number((raw.get("time") or {}).get("end"))
    word = record.slurm_state.split(" ", 1)[0].upper()  # "CANCELLED by 1001" -> CANCELLED
    # Slurm prints end 0 while a run goes on. RESIZING maps to RUNNING, yet names the record of
    # the allocation before a shrink, which has ended.
    # A run that left the queue without starting (cancelled while pending) ends too: its queue
    # wait is submit to that end, not a wait that grows at every report.
    running = word in ("RUNNING", "PENDING")
    cpus, gpus = allocated_tres(schema, (raw.get("tres") or {}).get("allocated"))
    return SlurmRun(
        job_id=record.job_id,
        user=record.user or _group_label(raw),
        comment=record.comment,
        slurm_state=word,
        exit_code=record.exit_code,
        submit_time=record.submit_time,
        start_time=record.start_time if started else None,
        end_time=float(end) if end and not running else None,
        nodes=record.node_count if started else 0,
        node_list=record.node_list if started else "",
        cpus=cpus if started else 0,
        gpus=gpus if started else 0,
        name=record.name,
    )


def _group_label(raw: dict[str, Any]) -> str:
    """Who ran a job that sacct names no user for: Slurm 22.05's JSON takes the user from the
    job's association, which a user without one (no ``sacctmgr add user``) lacks; the job's
    group is still there, and is shown as ``group:<name>`` (never passed off as a user name)."""
    group = raw.get("group")
    return f"group:{group}" if isinstance(group, str) and group else ""


def allocated_tres(schema: Schema, entries: Any) -> tuple[int | None, int | None]:
    """CPUs and GPUs from ``tres.allocated``; (None, None) when Slurm listed none.

    GPUs are the ``gres/gpu`` entry; typed entries (``gres/gpu:a100``) repeat it and are summed
    only when the untyped one is missing."""
    if not isinstance(entries, list) or not entries:
        return None, None
    counts: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kind = str(entry.get("type") or "")
        name = str(entry.get("name") or "")
        count = schema.number(entry.get("count"))
        if count is not None:
            counts[f"{kind}/{name}" if name else kind] = count
    typed = [n for key, n in counts.items() if key.startswith("gres/gpu:")]
    gpus = counts.get("gres/gpu", sum(typed))
    return counts.get("cpu"), gpus
