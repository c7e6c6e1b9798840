"""Plumbing under the concepts: every filename of a run and a grid (``paths``), files written atomically and
checkpoints read safely (``files``), where a run came from (``provenance``: git commit, SLURM job, versions),
and the warm job server (``job_server``) with its client (``job_client``)."""
