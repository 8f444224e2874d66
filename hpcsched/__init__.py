"""hpcsched: elastic, deep-learning-aware scheduling on Slurm with rootless Podman and torchrun.

The package is laid out along the path of a job: ``planning`` (request → batch script),
``slurm`` (the one gateway to Slurm's commands), ``daemon`` (store, monitor, socket server),
``launcher`` (the per-node container start), ``runtime`` (inside the job) and ``cli``.
"""

__version__ = "0.1.0"
