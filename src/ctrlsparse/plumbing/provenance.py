"""Where a run's numbers came from: the git commit of the code, the SLURM job, the library versions.

Written into the run's summary, mirrored as MLflow tags and printed on the report's title page; tracking and
report both read it from here.
"""

from __future__ import annotations

import os
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# summary key -> environment variable that SLURM sets in every job step
SLURM_VARIABLES = {"job_id": "SLURM_JOB_ID", "node": "SLURMD_NODENAME", "cluster": "SLURM_CLUSTER_NAME"}
# summary key -> the distribution whose version a run records
DISTRIBUTIONS = {"torch": "torch", "cooper": "cooper-optim", "ctrlsparse": "ctrlsparse"}


def slurm_job() -> dict[str, str]:
    """Id, node and cluster of the SLURM job running this process (``sacct -j ID`` tells the rest); {} outside SLURM."""
    return {key: os.environ[name] for key, name in SLURM_VARIABLES.items() if os.environ.get(name)}


def library_version() -> str:
    """This library's version (``ctrlsparse.__version__``), read without importing the package root."""
    try:
        return version("ctrlsparse")
    except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
        return "unknown"


def versions() -> dict[str, str]:
    """The versions of torch, cooper and ctrlsparse that this process runs."""
    import torch

    return {
        "torch": torch.__version__,
        "cooper": version(DISTRIBUTIONS["cooper"]),
        "ctrlsparse": library_version(),
    }


def git_commit() -> str | None:
    """Commit of the project checkout (``-dirty`` if tracked files changed); ``$CTRLSPARSE_GIT_COMMIT`` wins."""
    if os.environ.get("CTRLSPARSE_GIT_COMMIT"):
        return os.environ["CTRLSPARSE_GIT_COMMIT"]
    for where in (Path(__file__).resolve().parents[2], Path.cwd()):
        try:
            commit = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        return commit + ("-dirty" if dirty else "")
    return None
