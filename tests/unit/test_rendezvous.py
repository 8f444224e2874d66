"""The rendezvous port: chosen free when an attempt starts, and a port taken before torchrun could
listen on it starts the step again on another port; a busy port never fails a job (C4)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcsched.launcher import driver, rendezvous
from hpcsched.launcher.rendezvous import PORT_BASE, PORT_RETRIES, PORT_SPAN, candidate_ports, choose_port, first_guess

# recorded from torchrun in the training image, its port held by another process
TORCH_BUSY = ("torch.distributed.DistNetworkError: The server socket has failed to listen on any local network "
              "address. port: 23456, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use\n")
SCRIPT_FAILED = "Traceback (most recent call last):\nValueError: loss is nan\n"


def no_kernel_port() -> int:
    raise AssertionError("the kernel was asked although a candidate was free")


@given(st.integers(min_value=1, max_value=2**31 - 2))
def test_candidates_start_at_the_first_guess_and_stay_below_the_ephemeral_range(job_id: int) -> None:
    ports = candidate_ports(job_id)
    assert ports[0] == first_guess(job_id) != first_guess(job_id + 1)
    assert all(PORT_BASE <= p < PORT_BASE + PORT_SPAN <= 32768 for p in ports)
    assert len(set(ports)) == len(ports)


def test_C4_busy_and_already_failed_ports_are_skipped() -> None:
    first, second, third, fourth = candidate_ports(7)[:4]
    busy = {first, second}
    port = choose_port(7, avoid=[third], is_free=lambda p: p not in busy, any_free=no_kernel_port)
    assert port == fourth


def test_C4_a_job_whose_port_is_taken_does_not_move_to_the_next_jobs_port() -> None:
    # Slurm jobs 1286 and 1287 started together on one node; 1286's first guess was taken, and the
    # next port it moved to was 1287's first guess, still free while 1286's torchrun was starting.
    fallbacks = {port for job in range(1, 2000) for port in candidate_ports(job)[1:4]}
    firsts = {first_guess(job) for job in range(1, 2000)}
    assert len(fallbacks & firsts) < 0.5 * len(fallbacks)  # drawn at random, not the neighbours
    assert not {first_guess(1286 + k) for k in range(1, 64)} & set(candidate_ports(1286)[1:4])


def test_C4_when_every_candidate_is_busy_the_kernel_picks_a_free_port() -> None:
    assert choose_port(9999, avoid=[], is_free=lambda p: False, any_free=lambda: 45678) == 45678


def test_a_port_with_a_listener_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not rendezvous.port_is_free(listener.getsockname()[1])
    assert rendezvous.port_is_free(rendezvous.any_free_port())


@pytest.mark.parametrize(("output", "busy"), [
    (TORCH_BUSY, True),
    ("RuntimeError: The server socket has failed to bind to [::]:29500 (errno: 98 - Address already in use).", True),
    (SCRIPT_FAILED, False),
])
def test_torch_busy_port_failure_is_told_from_other_failures(output: str, busy: bool) -> None:
    assert rendezvous.port_was_busy(output) is busy


# --- the driver runs the step again on another port ---------------------------------------------


class FakeStep:
    """An srun step that has already ended, having written ``output`` to the attempt log."""

    def __init__(self, output: str, rc: int, stdout: int) -> None:
        os.write(stdout, output.encode())
        self.returncode = rc

    def poll(self) -> int:
        return self.returncode


class WaitingStep(FakeStep):
    """A step whose first node's torchrun has failed while the other nodes wait for it (srun
    would end them ``STEP_WAIT_SECONDS`` later); it ends when signalled."""

    def __init__(self, output: str, rc: int | None, stdout: int) -> None:
        super().__init__(output, 0, stdout)
        self.returncode: int | None = None  # type: ignore[assignment]
        self.signals: list[int] = []

    def poll(self) -> int | None:  # type: ignore[override]
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.returncode = 143


@dataclass
class Srun:
    """The steps the driver started (with the port each was given) and the outcomes still to give."""

    outcomes: list[tuple[str, int | None]] = field(default_factory=list)  # rc None: it waits to be ended
    ports: list[int] = field(default_factory=list)
    steps: list[FakeStep] = field(default_factory=list)

    def start_step(self, argv: list[str], *, stdout: int, env: dict[str, str]) -> FakeStep:
        self.ports.append(int(env[rendezvous.PORT_ENV]))
        output, rc = self.outcomes.pop(0)
        self.steps.append(FakeStep(output, rc, stdout) if rc is not None else WaitingStep(output, rc, stdout))
        return self.steps[-1]


@pytest.fixture
def srun(monkeypatch: pytest.MonkeyPatch) -> Srun:
    fake = Srun()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setattr(driver, "allocation_nodes", lambda _id, _slurm: ("node1", 1))
    monkeypatch.setattr(driver.runner, "start_step", fake.start_step)
    return fake


def run_attempt(tmp_path: Path, srun: Srun, outcomes: list[tuple[str, int | None]]) -> tuple[int, str]:
    srun.outcomes.extend(outcomes)
    (tmp_path / "job").mkdir()
    d = driver.Driver(5, str(tmp_path / "job"), ["python", "-m", "hpcsched.launcher"], sys.stdout)
    rc = d.run_attempt("submit")
    return rc, (tmp_path / "job" / "attempt-1.log").read_text()


def test_C4_port_taken_before_torchrun_listened_runs_the_step_again_on_another_port(
        tmp_path: Path, srun: Srun) -> None:
    rc, log = run_attempt(tmp_path, srun, [(TORCH_BUSY, 1), ("done\n", 0)])
    assert rc == 0
    assert len(srun.ports) == 2 and srun.ports[0] != srun.ports[1]
    assert f"rendezvous port {srun.ports[0]} was taken" in log


def test_C4_a_step_whose_port_was_taken_is_ended_at_once_not_after_the_other_nodes_waited(
        tmp_path: Path, srun: Srun) -> None:
    rc, log = run_attempt(tmp_path, srun, [(TORCH_BUSY, None), ("done\n", 0)])
    assert rc == 0 and len(srun.ports) == 2
    first = srun.steps[0]
    assert isinstance(first, WaitingStep) and first.signals == [signal.SIGTERM]
    assert "could not listen on the rendezvous port: ending the step" in log


def test_a_script_that_fails_for_another_reason_is_not_run_again(tmp_path: Path, srun: Srun) -> None:
    rc, _log = run_attempt(tmp_path, srun, [(SCRIPT_FAILED, 1), ("done\n", 0)])
    assert rc == 1 and len(srun.ports) == 1


def test_retries_on_busy_ports_are_bounded(tmp_path: Path, srun: Srun) -> None:
    rc, _log = run_attempt(tmp_path, srun, [(TORCH_BUSY, 1)] * (PORT_RETRIES + 2))
    assert rc == 1
    assert len(set(srun.ports)) == len(srun.ports) == PORT_RETRIES + 1
