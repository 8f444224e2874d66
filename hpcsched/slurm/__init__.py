"""The Slurm gateway: the one place that runs Slurm's commands, and pure parsers of their output."""
