"""What re-estimating the BatchNorm statistics under the eval gates buys (``--recalibrate-norms N``): finished
runs evaluated as trained and again after :func:`ctrlsparse.training.norm_stats.recalibrate_norms` over ``--batches``
training batches, side by side. The runs are not changed on disk.

    .venv/bin/python benchmarks/norm_recalibration.py results/runs/digits/cnn/*/*/seed~0 --batches 20

Prints one Markdown row per run: its key's tail, its BatchNorms, the test accuracy as trained (the run's own
evaluation) and recalibrated.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (their checkpoint.pt)")
    parser.add_argument("--batches", type=int, default=20, help="training batches to re-estimate from")
    args = parser.parse_args()

    from torch import nn

    from ctrlsparse.training.evaluate import evaluate
    from ctrlsparse.training.purge_cli import finished_run

    print(f"| run | BatchNorms | test acc. as trained | recalibrated ({args.batches} batches) |\n|---|---|---|---|")
    for folder in args.runs:
        run, hparams = finished_run(folder)
        run.hparams = dataclasses.replace(run.hparams, recalibrate_norms=0)  # the run's evaluation as it was
        before = evaluate(run)["test_accuracy"]
        norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in run.model.modules())
        run.hparams = dataclasses.replace(run.hparams, recalibrate_norms=args.batches)  # as a run with the flag
        after = evaluate(run)["test_accuracy"]
        name = f"{hparams.dataset}/{hparams.arch}/{hparams.variant}~{hparams.level}"
        print(f"| {name} | {norms} | {100 * before:.2f}% | {100 * after:.2f}% |", flush=True)


if __name__ == "__main__":
    main()
