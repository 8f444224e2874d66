"""Runtime library used inside training jobs."""
