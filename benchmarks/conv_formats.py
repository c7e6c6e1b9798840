"""Each conv in its own memory format: per conv, its time in NCHW and in channels-last and the format chosen; then
the whole model in NCHW, in channels-last and in the mixed form, side by side.

    .venv/bin/python benchmarks/conv_formats.py --model resnet18 --size 64 --batches 16,1
    .venv/bin/python benchmarks/conv_formats.py --model mobilenet_v2 --size 224 --batches 16,1 --share 0.3

The model (``latency.py``'s ``build``: torchvision's at random weights, or ``registered:<arch>``), its dense
every-gate-open purge (``--share`` 1) or its purge with a random gate pattern at that MAC share, BatchNorms
folded (:func:`ctrlsparse.purge.deploy.fold_batchnorms`). Per conv: the least of repeated calls alone, its input
already in the format (:func:`ctrlsparse.purge.conv_formats.format_times`), at each ``--batches`` size, the
format faster alone and the one planned over all the batches (:func:`ctrlsparse.purge.conv_formats.planned_formats`:
conversions counted). Whole models (NCHW, channels-last, that plan, and the form the purge chooses,
:func:`ctrlsparse.purge.deploy_form` with these batches): interleaved rounds
(:func:`ctrlsparse.latency.interleaved_times`), medians in ms, and each one's share of the NCHW model's time
(the median of within-round ratios).
"""

from __future__ import annotations

import argparse
import statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batches", default="16,1")
    parser.add_argument("--share", type=float, default=1.0, help="MAC share of a random gate pattern (1: dense)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    import copy

    import torch
    from gate_patterns import random_pattern
    from latency import build

    from ctrlsparse.latency import interleaved_times, median_share
    from ctrlsparse.latency.measure import never_much_slower
    from ctrlsparse.purge import deploy_form, purge
    from ctrlsparse.purge.conv_formats import (
        conv_inputs,
        conversion_ms,
        format_times,
        mixed_formats,
        planned_formats,
    )
    from ctrlsparse.purge.deploy import fold_batchnorms

    torch.set_num_threads(args.threads)
    dense, gated, shape = build(args.model, args.size)
    x = torch.randn(2, *shape)
    if args.share < 1.0:
        random_pattern(gated, x, args.share, 1, 0)
        model, _ = fold_batchnorms(purge(gated, x))
    else:
        model, _ = fold_batchnorms(dense)
    modules = dict(model.named_modules())
    columns = " | ".join(f"{name} ms b{b}" for b in batches for name in ("nchw", "cl"))
    print(f"| conv | input | {columns} | faster alone | planned |")
    print("|---|---|" + "---|" * (2 * len(batches)) + "---|---|")
    shapes = conv_inputs(model, x)
    times = [format_times(modules[target], shape, batches) for target, shape in shapes.items()]
    planned = planned_formats(times, [conversion_ms(shape, batches, x.device) for shape in shapes.values()])
    chosen = dict(zip(shapes, planned, strict=True))
    short = {"channels_last": "cl", "contiguous": "nchw"}
    for (target, input_shape), ms in zip(shapes.items(), times, strict=True):
        cells = " | ".join(f"{ms[n][i]:.3f}" for i in range(len(batches)) for n in ("contiguous", "channels_last"))
        size = "x".join(str(s) for s in input_shape[1:])
        print(f"| {target} | {size} | {cells} | {short[never_much_slower(ms)]} | {short[chosen[target]]} |")
    models = {
        "nchw": model,
        "cl": copy.deepcopy(model).to(memory_format=torch.channels_last),
        "planned": mixed_formats(model, chosen, x),
    }
    print(f"\n{sum(c == 'channels_last' for c in chosen.values())} of {len(chosen)} convs planned in channels-last")
    timing = [torch.randn(batch, *shape) for batch in batches]
    form = deploy_form(model, x, timing=timing)
    models["purge's choice"] = form.model
    print(f"the purge's choice (deploy_form): {form.memory_format}, {form.channels_last_convs} convs channels-last\n")
    print("| batch | " + " | ".join(f"{name} ms" for name in models) + " | " +
          " | ".join(f"{name} share" for name in list(models)[1:]) + " |")  # fmt: skip
    print("|---|" + "---|" * (2 * len(models) - 1))
    for batch in timing:
        times = interleaved_times(models, batch, seconds=args.seconds, min_rounds=15)
        ms = " | ".join(f"{1000 * statistics.median(values):.2f}" for values in times.values())
        shares = " | ".join(f"{median_share(times, name, 'nchw'):.3f}" for name in list(models)[1:])
        print(f"| {batch.shape[0]} | {ms} | {shares} |")


if __name__ == "__main__":
    main()
