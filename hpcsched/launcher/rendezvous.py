"""The rendezvous port of an attempt: chosen free on the first node, retried when taken (C4).

torchrun's rendezvous store listens on one port of the first node, and every node must be told
the same one. The batch driver runs on that node, so it picks the port when an attempt starts and
passes it to every launcher in ``HPCSCHED_MASTER_PORT``. Ports are looked for in 20000-29999,
below the range the kernel hands out to outgoing connections, so a port found free stays free
unless another program listens on it; if one does before torchrun starts, torchrun fails with
EADDRINUSE and the driver runs the attempt's step again on another port (``PORT_RETRIES`` times),
ending the step as soon as its output says so (:class:`BusyPortWatch`).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Collection

PORT_ENV = "HPCSCHED_MASTER_PORT"
PORT_BASE = 20000
PORT_SPAN = 10000
PORT_CANDIDATES = 64  # ports tried in the span before asking the kernel for any free one
PORT_RETRIES = 3  # steps run again after torchrun found its port taken
# torch's messages when the rendezvous store cannot listen (2.x, then 1.x wording)
BUSY_PORT_MARKERS = ("name: EADDRINUSE", "The server socket has failed to")
BUSY_MARKER_OVERLAP = 256  # output kept between two reads, so a message split by them is still seen


def first_guess(slurm_job_id: int) -> int:
    """Where the search starts: a port per Slurm job, so jobs sharing a node rarely meet."""
    return PORT_BASE + slurm_job_id % PORT_SPAN


def candidate_ports(slurm_job_id: int, count: int = PORT_CANDIDATES) -> list[int]:
    """The first guess, then ports drawn at random with the job's id as the seed: not the next
    ones, which are the first guesses of the jobs submitted next. Two jobs that start together
    on one node would otherwise both find the second one's port free (the first one's torchrun
    not listening yet) and meet on it."""
    draw = random.Random(slurm_job_id)
    rest = [PORT_BASE + k for k in draw.sample(range(PORT_SPAN), min(count, PORT_SPAN))]
    return [first_guess(slurm_job_id), *[port for port in rest if port != first_guess(slurm_job_id)]][:count]


def choose_port(slurm_job_id: int, avoid: Collection[int], is_free: Callable[[int], bool],
                any_free: Callable[[], int]) -> int:
    """The first candidate that is free now and not in ``avoid``; else any port the kernel gives."""
    for port in candidate_ports(slurm_job_id):
        if port not in avoid and is_free(port):
            return port
    return any_free()


def port_is_free(port: int) -> bool:
    """Whether a listener could bind ``port`` on every address of this node now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def port_was_busy(step_output: str) -> bool:
    """Whether torchrun's rendezvous failed because its port was taken."""
    return any(marker in step_output for marker in BUSY_PORT_MARKERS)


class BusyPortWatch:
    """Reads a step's output as it grows (each byte once, at most every second) for torch's
    message that the rendezvous port was taken."""

    def __init__(self, path: str, offset: int) -> None:
        self.path, self.offset, self.tail, self.next_read = path, offset, "", 0.0

    def taken(self, now: float) -> bool:
        if now < self.next_read:
            return False
        self.next_read = now + 1.0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        seen = self.tail + data.decode("utf-8", "replace")
        self.tail = seen[-BUSY_MARKER_OVERLAP:]
        return port_was_busy(seen)


def read_from(path: str, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")
