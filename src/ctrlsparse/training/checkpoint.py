"""Resumable runs: everything that determines the rest of training, saved atomically every epoch.

Model, both optimizers (cooper's state holds the primal and the dual one), multipliers, the data-order
generator and torch's RNG (gate noise), plus the metrics rows so far. The learning-rate schedule is a pure
function of the epoch, so it needs no state. Loads with ``torch.load(weights_only=True)``
(:func:`ctrlsparse.plumbing.files.read_checkpoint`).

Each save keeps the checkpoint it replaces as ``checkpoint.prev.pt``. A checkpoint that cannot be read
(truncated, overwritten, copied half-way) is moved aside to ``checkpoint.pt.corrupt`` with one line on stderr,
and the run resumes from the previous one, or starts afresh (saying so) when that is unreadable too.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctrlsparse.hparams import HParams
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import UnreadableCheckpoint, read_checkpoint, save_torch, write_csv
from ctrlsparse.training.setup import Run


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    rows: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0
    last_save: float = field(default_factory=time.monotonic)

    def save_due(self, hparams: HParams) -> bool:
        return self.epoch >= hparams.epochs or time.monotonic() - self.last_save >= hparams.checkpoint_seconds


def save(run: Run, progress: Progress, out_dir: Path) -> None:
    """Write the checkpoint and the metrics rows it holds (so the two never disagree)."""
    rng = {"torch": torch.get_rng_state(), "data": run.generator.get_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    state = {
        "hparams": run.hparams.to_dict(),
        "epoch": progress.epoch,
        "rows": progress.rows,
        "wall_seconds": progress.wall_seconds,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "cmp": run.problem.state_dict(),
        "rng": rng,
    }
    save_torch(paths.checkpoint_path(out_dir), state, previous=paths.previous_checkpoint_path(out_dir))
    write_csv(paths.metrics_path(out_dir), progress.rows)
    progress.last_save = time.monotonic()


def read_latest(out_dir: Path, device: torch.device | str, main: bool = True) -> dict[str, Any] | None:
    """The newest readable checkpoint state in ``out_dir`` (``checkpoint.pt``, else ``checkpoint.prev.pt``),
    or None when there is none. An unreadable ``checkpoint.pt`` is moved aside (by the main process: DDP's
    other ranks then find it gone and read the same fallback) and the fallback is said in one line."""
    current, previous = paths.checkpoint_path(out_dir), paths.previous_checkpoint_path(out_dir)
    if current.exists():
        try:
            return read_checkpoint(current, device)
        except UnreadableCheckpoint as error:
            problem = str(error)
            if main:
                current.replace(paths.corrupt_path(current))
                problem += f"; moved aside to {paths.corrupt_path(current).name}"
    elif previous.exists():
        problem = f"{current} is missing (a save was cut short, or it was deleted)"
    else:
        return None
    fallback = None
    if previous.exists():
        try:
            fallback = read_checkpoint(previous, device)
        except UnreadableCheckpoint as error:
            problem += f", and {error}"
    if main:
        then = f"resuming from {previous.name} (epoch {fallback['epoch']})" if fallback else "starting the run afresh"
        print(f"ctrlsparse: {problem}; {then}", file=sys.stderr)
    return fallback


def same_shapes(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    return saved.keys() == current.keys() and all(saved[k].shape == current[k].shape for k in current)


def load(run: Run, out_dir: Path) -> Progress:
    """Restore ``run`` from the checkpoint in ``out_dir``; a fresh Progress when there is none to resume."""
    path = paths.checkpoint_path(out_dir)
    state = read_latest(Path(out_dir), run.device, run.processes.main)
    if state is None:
        return Progress()
    saved = HParams.from_dict(state["hparams"]).computation()
    if saved != run.hparams.computation():
        print(f"ctrlsparse: {path} was written with other hyperparameters; starting afresh", file=sys.stderr)
        return Progress()
    if not same_shapes(state["model"], run.model.state_dict()):
        print(f"ctrlsparse: {path} holds another architecture (older code?); starting afresh", file=sys.stderr)
        return Progress()
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.problem.load_state_dict(state["cmp"])
    torch.set_rng_state(state["rng"]["torch"].cpu())
    run.generator.set_state(state["rng"]["data"].cpu())
    if "cuda" in state["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), run.device)
    return Progress(state["epoch"], list(state["rows"]), state["wall_seconds"])
