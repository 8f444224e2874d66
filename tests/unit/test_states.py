"""Slurm state strings map through one table; anything else is UNKNOWN, never a final state."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hpcsched.jobs.model import JobState
from hpcsched.slurm.states import SLURM_STATES, to_job_state


@pytest.mark.parametrize(
    ("slurm_state", "state"),
    [
        ("PENDING", JobState.PENDING),
        ("REQUEUED", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("COMPLETING", JobState.RUNNING),
        ("COMPLETED", JobState.COMPLETED),
        ("FAILED", JobState.FAILED),
        ("CANCELLED", JobState.CANCELLED),
        ("CANCELLED by 1001", JobState.CANCELLED),
        ("TIMEOUT", JobState.TIMEOUT),
        ("NODE_FAIL", JobState.NODE_FAIL),
        ("PREEMPTED", JobState.PREEMPTED),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY),
        ("running", JobState.RUNNING),
        (" COMPLETED ", JobState.COMPLETED),
    ],
)
def test_slurm_state_maps_to_job_state(slurm_state: str, state: JobState) -> None:
    assert to_job_state(slurm_state) is state


@pytest.mark.parametrize("slurm_state", ["", "   ", "DONE", "COMPLETE", "COMPLETEDX", "FAIL", "CANCELED", "NONE"])
def test_unknown_or_empty_state_is_unknown(slurm_state: str) -> None:
    assert to_job_state(slurm_state) is JobState.UNKNOWN


def _names_a_known_state(text: str) -> bool:
    words = text.split()
    return bool(words) and words[0].upper() in SLURM_STATES


@given(st.text())
def test_string_naming_no_slurm_state_is_unknown_never_final(text: str) -> None:
    assume(not _names_a_known_state(text))
    assert to_job_state(text) is JobState.UNKNOWN


@given(st.sampled_from(sorted(SLURM_STATES)), st.text(st.characters(whitelist_categories=("L", "N")), min_size=1))
def test_known_state_with_a_glued_suffix_is_unknown_never_final(known: str, suffix: str) -> None:
    assume(f"{known}{suffix}".upper() not in SLURM_STATES)
    assert to_job_state(f"{known}{suffix}") is JobState.UNKNOWN


def test_unknown_is_not_a_final_state() -> None:
    assert not JobState.UNKNOWN.is_final
    assert not JobState.SUBMITTING.is_final
