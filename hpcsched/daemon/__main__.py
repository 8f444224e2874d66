"""``python -m hpcsched.daemon``: run the daemon in the foreground (the CLI starts it detached)."""

from __future__ import annotations

import sys

from hpcsched.config import Settings
from hpcsched.daemon.lifecycle import AlreadyRunning, run_daemon
from hpcsched.errors import HpcschedError


def main() -> int:
    try:
        run_daemon(Settings.from_env())
    except AlreadyRunning as e:
        print(f"hpcsched daemon: {e}", file=sys.stderr)
        return 1
    except (HpcschedError, OSError) as e:  # the CLI that started it shows this line to the user
        print(f"hpcsched daemon: cannot start: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
