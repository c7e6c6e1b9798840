"""The run's files on disk: atomic writes, and safe reads of checkpoints.

Writes go to a temporary file in the same folder, are fsynced, then renamed over the target: a crash leaves
either the old file or the new one, never half of one. Checkpoints are read with
``torch.load(weights_only=True)``: a file that would run code to unpickle is refused, never executed.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def _write_atomic(
    path: str | Path, write: Callable[[IO[Any]], None], binary: bool = False, previous: str | Path | None = None
) -> None:
    """``previous``: once the new file is complete, the old one is renamed there first (kept as a fallback)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb" if binary else "w", **({} if binary else {"newline": ""})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)  # a crash right here leaves only ``previous``, which readers fall back to
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    _write_atomic(path, lambda handle: handle.write(json.dumps(data, indent=2, sort_keys=False) + "\n"))


def write_text(path: str | Path, text: str) -> None:
    _write_atomic(path, lambda handle: handle.write(text))


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows may gain keys over time; the header is the union of keys in first-seen order."""
    header: dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(handle, fieldnames=list(header), restval="")
        writer.writeheader()
        writer.writerows(rows)

    _write_atomic(path, write)


def save_torch(path: str | Path, state: Any, previous: str | Path | None = None) -> None:
    """``torch.save`` atomically; with ``previous``, the file it replaces is kept there."""
    import torch

    _write_atomic(path, lambda handle: torch.save(state, handle), binary=True, previous=previous)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely (e.g. a pickle that would run code); the message says what to do."""


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint that is not a complete torch archive (truncated, corrupt): a run falls back to its previous
    checkpoint (:func:`ctrlsparse.training.checkpoint.read_latest`); elsewhere (a dense run to prune) it is a
    one-line error."""


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)``; the only non-tensor class allowed is cooper's nuPI init enum.

    A file that needs anything else to unpickle (code to run, foreign classes) is refused, never executed
    (:class:`CheckpointError`); one that is not a complete archive raises :class:`UnreadableCheckpoint`.
    """
    import torch
    from cooper.optim.torch_optimizers.nupi_optimizer import nuPIInitType

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a cut one has no central directory
        raise UnreadableCheckpoint(f"{path} is not a complete checkpoint archive (truncated?)")
    try:
        with torch.serialization.safe_globals([nuPIInitType]):
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(
            f"{path} is not a weights-only checkpoint and was not loaded ({reason}); "
            "delete it if you want the run to start afresh"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:  # a damaged archive member
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise UnreadableCheckpoint(f"{path} cannot be read ({reason})") from None
