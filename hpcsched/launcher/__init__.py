"""The per-node launcher: started by ``srun`` once per node, it runs the job's rootless Podman
container (which runs torchrun), forwards signals to it, and leaves nothing behind on exit."""
