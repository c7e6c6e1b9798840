"""A run trained and purged in a test's temporary folder: the summary before and after the purge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctrlsparse.hparams import HParams
from ctrlsparse.plumbing import paths


def train_then_purge(folder: Path, **given: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``HParams.resolve(device="cpu", **given)`` into ``folder / "run"``, purge it with the purge command;
    return its summary before and after the purge."""
    from ctrlsparse.training import purge_cli
    from ctrlsparse.training.loop import train

    run = folder / "run"
    train(HParams.resolve(device="cpu", **given), run, None)
    before = json.loads(paths.summary_path(run).read_text())
    assert purge_cli.main([str(run)]) == 0
    return before, json.loads(paths.summary_path(run).read_text())
