"""The dense baseline a purged model is timed against, as it was and as it is: a finished run's every-gate-open
model with its trained values (``purge_dense``), with its weights re-drawn (``ctrlsparse.purge.deploy.redrawn_``,
what the purge job, the latency table and the run's calibration use), and the run's purged model, each in its
inference form, timed side by side.

    .venv/bin/python benchmarks/dense_baseline.py RUN_DIR [--batch 128] [--threads 2]

Prints, per model, the BatchNorms folded, the memory format and the least ms per call at batch 1 and ``--batch``
(default: the run's training batch), and the purged model's share of each baseline. A trained run's closed
channels keep BatchNorm variances of ~0: opened in the trained baseline, their fold changes the output and is
refused, and that model runs slower than its architecture.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run directory")
    parser.add_argument("--batch", type=int, default=0, help="the second batch size (default: the training batch)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    import torch

    from ctrlsparse.latency import interleaved_times
    from ctrlsparse.purge import deploy_form, purge, purge_dense
    from ctrlsparse.purge.deploy import redrawn_
    from ctrlsparse.training.purge_cli import finished_run

    torch.set_num_threads(args.threads)
    run, hparams = finished_run(args.run)
    model = run.model.eval()
    example = torch.zeros(1, *run.data.input_shape)
    batch = torch.randn(args.batch or hparams.batch_size, *run.data.input_shape)
    timing = (batch, batch[:1])  # as the purge job chooses the memory format
    forms = {
        "dense, trained values": deploy_form(purge_dense(model, example), example, timing),
        "dense, re-drawn": deploy_form(redrawn_(purge_dense(model, example)), example, timing),
        "purged": deploy_form(purge(model, example), example, timing),
    }
    least = {}
    for x in (batch[:1], batch):
        times = interleaved_times({k: f.model for k, f in forms.items()}, x, seconds=args.seconds, min_rounds=9)
        least[len(x)] = {k: 1000.0 * min(v) for k, v in times.items()}
    b = len(batch)
    print(f"{args.run}: {args.threads} threads\n")
    print(f"| model | BatchNorms folded | memory format | ms, batch 1 | ms, batch {b} | purged share, batch 1 / {b} |")
    print("|---|---|---|---|---|---|")
    for key, form in forms.items():
        share = " / ".join(f"{least[n]['purged'] / least[n][key]:.3f}" for n in (1, b))
        print(f"| {key} | {form.folded} | {form.memory_format} | {least[1][key]:.2f} | {least[b][key]:.2f} | {share} |")


if __name__ == "__main__":
    main()
