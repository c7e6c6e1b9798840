"""The training loop: one screen; evaluation, checkpointing and metric files are small hooks."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ctrlsparse.data.describe import describe
from ctrlsparse.data.imagecheck import BadImages, record_skipped
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import hparams_hash, pretrained_key, run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import write_csv, write_json
from ctrlsparse.training import checkpoint, distributed, run_lock
from ctrlsparse.training.evaluate import evaluate
from ctrlsparse.training.setup import Run, build_run, gates_lr, set_learning_rates, weights_lr
from ctrlsparse.training.summary import build_summary


class DivergenceError(RuntimeError):
    """The loss or a metric became NaN or infinite."""


class Interrupted(RuntimeError):
    """Training stopped early on request (SIGTERM); the checkpoint holds every finished epoch."""


def train_epoch(run: Run) -> float:
    """One pass over the training set; returns the mean objective (cross-entropy + weight decay)."""
    run.model.train()
    total = torch.zeros((), device=run.device)
    count = 0
    for inputs, labels in run.data.train_batches(run.hparams.batch_size, run.generator):
        rollout = run.optimizer.roll(compute_cmp_state_kwargs={"inputs": inputs, "labels": labels})
        run.problem.after_step(rollout.cmp_state)
        total += rollout.cmp_state.misc["objective"] * len(labels)
        count += len(labels)
    return float(distributed.mean_over_processes(total)) / count  # DDP: shards are equal up to one example


def check_finite(row: dict[str, Any], run_name: str) -> None:
    bad = [key for key, value in row.items() if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise DivergenceError(
            f"run {run_name} diverged at epoch {row['epoch']}: {', '.join(bad)} = {row[bad[0]]}; "
            "lower the learning rates (--lr, --gates-lr, --dual-lr) and rerun"
        )


def print_progress(row: dict[str, Any], epochs: int) -> None:
    every = max(1, epochs // 20)
    if row["epoch"] % every and row["epoch"] != epochs:
        return
    multipliers = [v for k, v in row.items() if k.startswith("multiplier/")]
    dual = f"  lambda max {max(multipliers):.4f}" if multipliers else ""
    print(
        f"epoch {row['epoch']:>4}/{epochs}  loss {row['train_loss']:.4f}  test acc {100 * row['test_accuracy']:.2f}%"
        f"  density {row['expected_density']:.4f} (eval {row['eval_density']:.4f}){dual}"
        f"  {row['epoch_seconds']:.2f}s",
        file=sys.stderr,
        flush=True,
    )


def train(
    hparams: HParams,
    out_dir: str | Path,
    on_epoch: Callable[[dict[str, Any], int], None] | None = print_progress,
    on_start: Callable[[Path], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train (or resume, or return the finished) run in ``out_dir``; returns its summary.

    ``on_start(out_dir)`` runs once ``hparams.json`` is written (the CLI opens its MLflow run there). When
    ``stop_requested()`` turns true, the current epoch ends, the checkpoint is saved and :class:`Interrupted`
    is raised; a NaN/inf metric saves ``metrics.csv`` with the bad row and raises :class:`DivergenceError`.
    Another process training ``out_dir`` raises :class:`~ctrlsparse.training.run_lock.RunBusy` before any work.
    """
    with run_lock.hold(out_dir, enabled=distributed.is_main()):
        return _train(hparams, Path(out_dir), on_epoch, on_start, stop_requested)


def _train(
    hparams: HParams,
    out: Path,
    on_epoch: Callable[[dict[str, Any], int], None] | None,
    on_start: Callable[[Path], None] | None,
    stop_requested: Callable[[], bool] | None,
) -> dict[str, Any]:
    try:
        run = build_run(hparams)  # fails on bad input (e.g. layer-wise targets vs layers) before anything is written
    except BadImages as error:  # ... but the image files that stop it are listed beside the run
        raise error.listed(out, write=distributed.is_main()) from None
    origin = pretrained_key(hparams)  # the key of the run it starts from (magnitude: the dense run), else ""
    key = run_key(hparams, origin)
    identity = {
        **hparams.to_dict(),
        "run_key": key,
        "hparams_hash": hparams_hash(hparams, origin),
        "variant": hparams.variant,
        "level": hparams.level,
    }
    main = run.processes.main  # with several processes (DDP) only rank 0 writes files and reports
    if main:
        write_json(paths.hparams_path(out), identity)
        write_json(paths.dataset_path(out), describe(hparams, run.data))  # the MLflow run's dataset input
        if hasattr(run.data, "skipped"):  # an image folder, checked before training
            record_skipped(out, hparams.dataset, run.data.skipped)
    progress = checkpoint.load(run, out)
    if 0 < progress.epoch < hparams.epochs:
        print(f"ctrlsparse: {key}: resuming from the checkpoint after epoch {progress.epoch}", file=sys.stderr)
    if on_start is not None and main:
        on_start(out)
    for epoch in range(progress.epoch, hparams.epochs):
        start = time.perf_counter()
        set_learning_rates(run, epoch)
        run.problem.before_epoch(
            epoch
        )  # constrained runs: this epoch's targets (target_anneal), fixed gates (fix_gates)
        train_loss = train_epoch(run)  # returns a float: the device has finished the epoch's steps
        train_seconds = time.perf_counter() - start
        row = {"epoch": epoch + 1, "train_loss": train_loss, **evaluate(run)}
        row |= {"lr": weights_lr(hparams, epoch), "gates_lr": gates_lr(run, epoch)}
        row |= {"train_seconds": train_seconds, "epoch_seconds": time.perf_counter() - start}
        try:
            check_finite(row, key)
        except DivergenceError:
            if main:
                write_csv(paths.metrics_path(out), [*progress.rows, row])  # the bad row, for the log and MLflow
            raise
        progress.rows.append(row)
        progress.epoch = epoch + 1
        progress.wall_seconds += row["epoch_seconds"]
        stopping = distributed.any_process(stop_requested is not None and stop_requested())
        if main and (stopping or progress.save_due(hparams)):
            checkpoint.save(run, progress, out)
        if on_epoch is not None and main:
            on_epoch(row, hparams.epochs)
        if stopping and progress.epoch < hparams.epochs:
            raise Interrupted(f"run {key} stopped after epoch {progress.epoch} of {hparams.epochs}; checkpoint saved")
    summary = build_summary(run, progress, identity)
    if main:
        write_json(paths.summary_path(out), summary)  # written last: its presence means "finished"
    return summary
