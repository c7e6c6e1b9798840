"""Every filename ctrlsparse writes lives here (and nowhere else).

This module is torch-free on purpose: the Snakemake workflow imports it to compute output paths.
"""

from __future__ import annotations

from pathlib import Path

# The directory under a results directory that holds every run (``results/runs/<run key>/``), shared by grids.
RUN_ROOT = "runs"

# Files inside one run directory.
METRICS = "metrics.csv"  # one row per epoch
HPARAMS = "hparams.json"  # fully resolved hyperparameters
DATASET = "dataset.json"  # what the run trained on: source, split sizes, shape, digest (MLflow's dataset input)
SUMMARY = "summary.json"  # final numbers; written last, so its presence means "run finished"
CHECKPOINT = "checkpoint.pt"  # everything needed to resume (weights_only-loadable)
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"  # the checkpoint before the last one (fallback if that is unreadable)
TRAIN_LOCK = "train.lock"  # flock'ed by the process training the run; holds its pid
CORRUPT_SUFFIX = ".corrupt"  # an unreadable file moved aside (e.g. summary.json.corrupt), kept for inspection
TRAIN_JOB = "train_job.json"  # where the last train job's time went (its epochs, its MLflow mirror)
MLFLOW_RUN = "mlflow_run.json"  # id of the MLflow run that mirrors this directory
DYNAMICS_PLOT = "dynamics.png"  # per-run training-dynamics figure (MLflow artifact)


def runs_root(results: str | Path) -> Path:
    """The directory of every run under a results directory: ``<results>/runs``."""
    return Path(results) / RUN_ROOT


def run_dir(root: str | Path, run_key: str) -> Path:
    """The directory of one run under ``root`` (e.g. ``results/runs``)."""
    return Path(root) / run_key


def metrics_path(run: str | Path) -> Path:
    return Path(run) / METRICS


def hparams_path(run: str | Path) -> Path:
    return Path(run) / HPARAMS


def dataset_path(run: str | Path) -> Path:
    return Path(run) / DATASET


def summary_path(run: str | Path) -> Path:
    return Path(run) / SUMMARY


def checkpoint_path(run: str | Path) -> Path:
    return Path(run) / CHECKPOINT


def previous_checkpoint_path(run: str | Path) -> Path:
    return Path(run) / PREVIOUS_CHECKPOINT


def train_lock_path(run: str | Path) -> Path:
    return Path(run) / TRAIN_LOCK


def corrupt_path(file: str | Path) -> Path:
    """Where an unreadable file is moved aside: beside it, with :data:`CORRUPT_SUFFIX` appended."""
    return Path(file).with_name(Path(file).name + CORRUPT_SUFFIX)


def train_job_path(run: str | Path) -> Path:
    return Path(run) / TRAIN_JOB


def mlflow_run_path(run: str | Path) -> Path:
    return Path(run) / MLFLOW_RUN


def dynamics_plot_path(run: str | Path) -> Path:
    return Path(run) / DYNAMICS_PLOT


# Written by `ctrlsparse purge` into a run directory.
PURGED_MODEL = "purged.pt2"  # the purged model (torch.export archive; plain torch loads it)
PURGE_SIZES = "purge.json"  # params and MACs of the dense and the purged model (also merged into summary.json)


def purged_model_path(run: str | Path) -> Path:
    return Path(run) / PURGED_MODEL


def purge_sizes_path(run: str | Path) -> Path:
    return Path(run) / PURGE_SIZES
