"""Every filename ctrlsparse writes lives here (and nowhere else).

This module is torch-free on purpose: the Snakemake workflow imports it to compute output paths.
"""

from __future__ import annotations

import os
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
BAD_IMAGES = "bad_images.txt"  # image files that do not decode (imagefolder, imagenet): "<path>\t<reason>" lines
# A search run (method search) trains its steps, runs of their own, under a runs root (the workflow's is the
# results' runs/, so its steps are shared with every grid); given none, under its own directory's steps/.
SEARCH_STEPS = "steps"

# Outside any run: the cache of verdicts of image-folder checks (ctrlsparse.data.imagecheck), one file per folder
# state, under $CTRLSPARSE_CACHE, else $XDG_CACHE_HOME/ctrlsparse, else ~/.cache/ctrlsparse.
CACHE_ENV = "CTRLSPARSE_CACHE"
IMAGE_CHECKS = "image-checks"


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


def bad_images_path(run: str | Path) -> Path:
    return Path(run) / BAD_IMAGES


def search_steps_root(run: str | Path) -> Path:
    """Where a search run trains its steps when no runs root is given: ``<run>/steps/<step's run key>``."""
    return Path(run) / SEARCH_STEPS


def cache_root() -> Path:
    """``$CTRLSPARSE_CACHE``, else ``$XDG_CACHE_HOME/ctrlsparse``, else ``~/.cache/ctrlsparse``."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ctrlsparse"


def image_check_path(key: str) -> Path:
    """The cached verdict of the image check of one folder state (``key``: its files, sizes and times)."""
    return cache_root() / IMAGE_CHECKS / f"{key}.json"


# Written by `ctrlsparse purge` into a run directory.
PURGED_MODEL = "purged.pt2"  # the purged model (torch.export archive; plain torch loads it)
PURGED_ONNX = "purged.onnx"  # the same model as ONNX, checked against PyTorch with onnxruntime
PURGE_SIZES = "purge.json"  # params and MACs of the dense and the purged model (also merged into summary.json)


def purged_model_path(run: str | Path) -> Path:
    return Path(run) / PURGED_MODEL


def purged_onnx_path(run: str | Path) -> Path:
    return Path(run) / PURGED_ONNX


def purge_sizes_path(run: str | Path) -> Path:
    return Path(run) / PURGE_SIZES
