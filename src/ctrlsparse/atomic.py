"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any


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
