"""The purge's re-indexing folded away or not, side by side: each model's dense and purged inference forms with
the folds of ``ctrlsparse.purge.index_folds`` and without them, timed interleaved in one process.

    .venv/bin/python benchmarks/index_folds.py                                   # the registered ViT, digits
    .venv/bin/python benchmarks/index_folds.py --models vit_b_16 --size 224 --batches 1 --seconds 8
    .venv/bin/python benchmarks/index_folds.py --runs results/runs/mnist5k/vit/constrained-model~0.3/*/seed~0

Per model (``latency.py``'s builders: torchvision's at random weights gated by ``ctrlsparse.gate``,
``registered:<arch>``), a random gate pattern (``gate_patterns.py``) at ``--share`` of the MACs; the dense model
(every gate open) and the purged one, each in the purge's inference form (``deploy_form``) with and without
``index_folds`` (attention above rank 4 left to ``scaled_dot_product_attention``), and, where the model has such
attention (a Swin's windows), the whole inference form (it written out: ``purge/attention_rank.py``); ``--runs``: finished runs' trained models instead (their gates as trained, the dense model
every gate open with its weights re-drawn, as the purge job times them). Prints a Markdown table per model: index ops (``index_select`` and ``cat`` nodes) and the
share of the un-folded dense model's time (medians of per-round shares) at each batch size, and the purged
model's share of its own dense model's time with the folds.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="registered:vit", help="comma-separated builders (latency.py)")
    parser.add_argument("--runs", nargs="*", default=[], help="finished run directories (instead of --models)")
    parser.add_argument("--size", type=int, default=32, help="input side in pixels (torchvision models)")
    parser.add_argument("--share", type=float, default=0.5, help="target MAC share of the random pattern")
    parser.add_argument("--batches", default="16,1", help="batch sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import torch
    from gate_patterns import random_pattern
    from latency import build

    from ctrlsparse.latency import interleaved_times, median_share
    from ctrlsparse.purge import count, deploy_form, purge, purge_dense
    from ctrlsparse.purge.deploy import redrawn_
    from ctrlsparse.purge.index_folds import index_ops_in
    from ctrlsparse.training.purge_cli import finished_run

    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    for name in args.runs or args.models.split(","):
        if args.runs:  # a trained model
            run, _ = finished_run(Path(name))
            gated, shape = run.model.eval(), tuple(run.data.input_shape)
            x = torch.randn(2, *shape)
            dense = redrawn_(purge_dense(gated, x))
            share = count(purge(gated, x), x).macs / count(dense, x).macs
        else:
            dense, gated, shape = build(name, args.size)
            x = torch.randn(2, *shape)
            share = random_pattern(gated, x, args.share, 1, 0)
        timing = [torch.randn(batch, *shape) for batch in batches]
        models = {}
        for label, model in (("dense", dense), ("purged", purge(gated, x))):
            for folds in (False, True):
                key = f"{label}{' folded' if folds else ''}"
                form = deploy_form(model, x, timing=timing, index_folds=folds, attention_written_out=False)
                models[key] = form.model
            form = deploy_form(model, x, timing=timing)  # the inference form: attention above rank 4 written out
            if form.written_out_attention:
                models[f"{label} folded, attention written out"] = form.model
        best = "folded, attention written out" if "purged folded, attention written out" in models else "folded"
        counts = {key: index_ops_in(model) for key, model in models.items()}
        measured = {
            batch: interleaved_times(models, torch.randn(batch, *shape), seconds=args.seconds, min_rounds=9)
            for batch in batches
        }
        print(f"\n{name}, input {tuple(shape)}, purged at {share:.3f} of the MACs\n")
        head = " | ".join(f"lat. batch {b}" for b in batches)
        print(f"| model | index ops | {head} |\n|---|---|{'---|' * len(batches)}")
        for key in models:
            shares = " | ".join(f"{median_share(measured[b], key, 'dense'):.3f}" for b in batches)
            print(f"| {key} | {counts[key]} | {shares} |")
        dense_best = f"dense {best}" if f"dense {best}" in models else "dense folded"
        own = " | ".join(f"{median_share(measured[b], f'purged {best}', dense_best):.3f}" for b in batches)
        print(f"| purged {best} / {dense_best} | | {own} |")


if __name__ == "__main__":
    main()
