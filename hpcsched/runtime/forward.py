"""Process 1 of the training container: runs torchrun and carries signals past it.

torchrun does not forward SIGUSR1/SIGUSR2 to its workers, and on SIGTERM it terminates them and
kills them 30 s later. This small init (``python3 -m hpcsched.runtime.forward MARKER -- torchrun
...``) therefore:

- sends SIGUSR1/SIGUSR2 straight to the worker processes (every descendant of torchrun, not
  torchrun itself, whose default action for those signals would be to die);
- on SIGTERM/SIGINT, asks the workers first (SIGUSR1, so elastic workers save and stop), then
  passes SIGTERM to torchrun after a grace period;
- reaps orphans, as a process 1 must;
- exits 75 ("checkpointed, requeue me") when the runtime library wrote the attempt's
  ``checkpointed`` marker — torchrun itself reports any non-zero worker exit as 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

EXIT_CHECKPOINTED = 75
TERM_GRACE = 20.0


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid``, read from /proc (no psutil in the image)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def signal_workers(torchrun_pid: int, signum: int) -> None:
    for pid in descendants(torchrun_pid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def note_event(attempt_dir: str, event: str) -> None:
    """Append a timestamped event to the attempt's events.jsonl (for the resize-cost breakdown)."""
    line = json.dumps({"event": event, "time": time.time(), "node": os.environ.get("SLURMD_NODENAME", "")})
    try:
        os.makedirs(attempt_dir, exist_ok=True)
        with open(os.path.join(attempt_dir, "events.jsonl"), "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        pass  # timing notes are optional; never fail the job over them


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python3 -m hpcsched.runtime.forward MARKER -- COMMAND...", file=sys.stderr)
        return 2
    marker, command = argv[0], argv[2:]
    note_event(os.path.dirname(marker), "container_up")
    child = subprocess.Popen(command)
    terminating = threading.Event()

    def on_user_signal(signum: int, _frame: FrameType | None) -> None:
        workers = descendants(child.pid)
        print(f"hpcsched init: passing {signal.Signals(signum).name} to {len(workers)} worker processes",
              file=sys.stderr, flush=True)
        signal_workers(child.pid, signum)

    def on_terminate(signum: int, _frame: FrameType | None) -> None:
        if terminating.is_set():
            return
        terminating.set()
        signal_workers(child.pid, signal.SIGUSR1)
        def pass_on() -> None:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

        timer = threading.Timer(TERM_GRACE, pass_on)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGUSR1, on_user_signal)
    signal.signal(signal.SIGUSR2, on_user_signal)
    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGINT, on_terminate)
    code = child.wait()
    try:  # reap whatever else was reparented to us
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    if os.path.exists(marker):
        return EXIT_CHECKPOINTED
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
