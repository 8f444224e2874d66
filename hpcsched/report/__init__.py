"""``hpcsched report``: what each job and user really got from Slurm, and how much was useful.

The data path, one module each:

- ``gather.py`` (the shell): hpcsched's job records from the daemon, every Slurm run from one
  ``sacct --json -D`` call through :class:`~hpcsched.slurm.client.SlurmClient`, progress lines.
- ``sacct.py``: the allocated TRES and end times of requeued or resized runs, read from the same
  sacct JSON (pure).
- ``join.py``: which runs belong to which job and attempt, and what each run got (pure).
- ``work.py``: useful and redone steps, restart gaps, throughput and goodput (pure).
- ``build.py`` and ``totals.py``: the frozen :class:`~hpcsched.report.values.Report` (pure).
- ``render.py`` and ``plots.py``: table, CSV, JSON and PNG plots.
"""

from hpcsched.report.build import build_report
from hpcsched.report.values import Report, Window

__all__ = ["Report", "Window", "build_report"]
