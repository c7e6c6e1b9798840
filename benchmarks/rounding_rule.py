"""Channel rounding by channels or by gates, side by side: the same gate patterns of a grouped-conv model under the
rule of ``Gates.rounding_multiple`` (a set's gate count a multiple of N / gcd(N, the channels a gate covers)) and
under the rule before it (the gate count a multiple of N, emulated with every ``channels_per_gate`` at 1).

    .venv/bin/python benchmarks/rounding_rule.py --model regnet_x_400mf --size 64
    .venv/bin/python benchmarks/rounding_rule.py --model regnet_x_400mf --size 224 --multiple 8

Per rule: ``latency.py``'s random and steered patterns (``gate_patterns.py``) at ``--share`` of the MACs with
rounding ``--multiple``; every model (dense, the four purged) in the purge's inference form, timed interleaved in
one process (medians of the per-round shares, ``ctrlsparse.latency.median_share``), at batch 16 and 1, 2 threads.
Prints a Markdown table: MAC share and latency share per rule and pattern.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="regnet_x_400mf", help="a torchvision builder with grouped convs")
    parser.add_argument("--size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--share", type=float, default=0.3, help="target MAC share")
    parser.add_argument("--multiple", type=int, default=16, help="round_channels")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per batch size")
    args = parser.parse_args()

    import torch
    from gate_patterns import random_pattern, steered_pattern
    from latency import build

    from ctrlsparse.cost.latency import ExpectedLatency, latency_table
    from ctrlsparse.latency import interleaved_times, median_share
    from ctrlsparse.layers import gated_layers
    from ctrlsparse.purge import deploy_form, purge

    torch.set_num_threads(2)
    dense, gated, shape = build(args.model, args.size)
    x = torch.randn(2, *shape)
    units = [unit for _, unit in gated_layers(gated)]
    widths = [unit.channels_per_gate for unit in units]
    latency = ExpectedLatency(gated, x, latency_table(gated, x, 16, torch.device("cpu")))
    models, shares = {"dense": dense}, {}
    for rule in ("gates (before)", "channels"):
        for unit, width in zip(units, widths, strict=True):
            unit.channels_per_gate = 1 if rule.startswith("gates") else width
        for pattern in ("random", "steered"):
            if pattern == "random":
                share = random_pattern(gated, x, args.share, args.multiple, 0)
            else:
                share = steered_pattern(gated, x, args.share, args.multiple, latency, 0.25)
            shares[(rule, pattern)], models[(rule, pattern)] = share, purge(gated, x)
    timing = [torch.randn(batch, *shape) for batch in (16, 1)]
    models = {key: deploy_form(model, x, timing=timing).model for key, model in models.items()}
    measured = {
        batch: interleaved_times(models, torch.randn(batch, *shape), seconds=args.seconds, min_rounds=15)
        for batch in (16, 1)
    }
    print(f"{args.model}, {args.size}x{args.size}, N={args.multiple}, target {args.share} of the MACs\n")
    print("| rounds | pattern | MAC share | lat. batch 16 | lat. batch 1 |\n|---|---|---|---|---|")
    for (rule, pattern), share in shares.items():
        lat = [median_share(measured[batch], (rule, pattern), "dense") for batch in (16, 1)]
        print(f"| {rule} | {pattern} | {share:.3f} | {lat[0]:.3f} | {lat[1]:.3f} |")


if __name__ == "__main__":
    main()
