"""The SLURM job this process runs in, if any: written into the run's summary and mirrored as MLflow tags."""

from __future__ import annotations

import os

# summary key -> environment variable that SLURM sets in every job step
SLURM_VARIABLES = {"job_id": "SLURM_JOB_ID", "node": "SLURMD_NODENAME", "cluster": "SLURM_CLUSTER_NAME"}


def slurm_job() -> dict[str, str]:
    """Id, node and cluster of the SLURM job running this process (``sacct -j ID`` tells the rest); {} outside SLURM."""
    return {key: os.environ[name] for key, name in SLURM_VARIABLES.items() if os.environ.get(name)}
