"""Where one ``ctrlsparse train`` job's time went: ``train_job.json``, written when the job finishes.

Only what this job did: the epochs it trained (a resumed run's earlier epochs ran in earlier jobs, and a rerun
of a finished run trains none) and what its MLflow mirror cost it. The report sets these against the job's wall
time in Snakemake's benchmark file; both parts are measured inside the job, so the rest (interpreter start,
imports, data and model set-up, checkpoints, the summary) is the difference and never negative.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import write_json


@dataclass
class JobTime:
    started: float = field(default_factory=time.perf_counter)
    epochs: int = 0
    training_seconds: float = 0.0  # the epochs' own time (train + evaluate), as in metrics.csv's epoch_seconds
    mirror_seconds: float = 0.0

    def counting(self, on_epoch: Callable[[dict[str, Any], int], None] | None) -> Callable[[dict[str, Any], int], None]:
        """``on_epoch`` that also adds up the epochs this job trains."""

        def hook(row: dict[str, Any], epochs: int) -> None:
            self.epochs += 1
            self.training_seconds += row["epoch_seconds"]
            if on_epoch is not None:
                on_epoch(row, epochs)

        return hook

    def mirroring(self, action: Callable[..., None]) -> Callable[..., None]:
        """``action`` (a tracking call) with its time added to the mirror's."""

        def timed(*args: Any) -> None:
            start = time.perf_counter()
            try:
                action(*args)
            finally:
                self.mirror_seconds += time.perf_counter() - start

        return timed

    def write(self, out_dir: str | Path) -> None:
        write_json(
            paths.train_job_path(out_dir),
            {
                "epochs": self.epochs,
                "training_seconds": round(self.training_seconds, 4),
                "mirror_seconds": round(self.mirror_seconds, 4),
                "process_seconds": round(time.perf_counter() - self.started, 4),  # from the CLI's start
            },
        )
