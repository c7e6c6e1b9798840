"""Plumbing under the concepts: files written atomically and checkpoints read safely (``files``), where a run
came from (``provenance``: git commit, SLURM job, versions), and the warm job server with its client."""
