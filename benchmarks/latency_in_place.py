"""The latency model against the purged model, layer by layer: each Conv / Linear's time as the latency table
predicts it at the pattern's kept counts, and as measured in place (forward hooks in the whole model, least of
``--calls``), for the dense model and the purged one, both in the purge's inference form.

    .venv/bin/python benchmarks/latency_in_place.py --model resnet18 --size 64 --batch 16 --share 0.3
    .venv/bin/python benchmarks/latency_in_place.py --model mobilenet_v2 --size 64 --pattern random

The model as ``latency.py`` builds it, a gate pattern at ``--share`` of the MACs (``gate_patterns.py``: steered
by the latency model, or random), the latency table of ``ctrlsparse.cost.latency`` (measured and cached as a
latency budget's is), the dense and the purged model in their inference forms
(:func:`ctrlsparse.purge.deployed`, memory formats chosen at ``--batch`` and 1). Per layer: predicted and
in-place ms, dense and purged, and the purged / dense share each way; then the sums, and the whole models' least
times (:func:`ctrlsparse.latency.measure.least_ms`) beside the latency model's uncorrected share.
"""

from __future__ import annotations

import argparse
import time


def in_place_ms(model, x, calls: int) -> list[float]:
    """Each Conv / Linear's least time over ``calls`` whole-model calls, in call order (forward hooks)."""
    import torch
    from torch import nn

    from ctrlsparse.latency.allocator import freed_memory_kept

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    least = [float("inf")] * len(layers)
    started: dict[int, float] = {}

    def before(i):
        return lambda module, args: started.__setitem__(i, time.perf_counter())

    def after(i):
        def hook(module, args, output):
            least[i] = min(least[i], 1000 * (time.perf_counter() - started[i]))

        return hook

    hooks = [h for i, m in enumerate(layers) for h in (m.register_forward_pre_hook(before(i)),
                                                         m.register_forward_hook(after(i)))]  # fmt: skip
    with torch.no_grad(), freed_memory_kept():
        for _ in range(calls):
            model(x)
    for hook in hooks:
        hook.remove()
    return least


def predicted_ms(latency, p) -> list[float]:
    """Each layer's term of the latency model at the 0/1 pattern ``p`` (:meth:`ExpectedLatency.layer_terms`)."""
    return [float(ms) for ms, _ in latency.layer_terms(p)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--pattern", choices=("steered", "random"), default="steered")
    parser.add_argument("--steer-least", type=float, default=0.25)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from gate_patterns import random_pattern, steered_pattern
    from latency import build

    from ctrlsparse.cost.latency import ExpectedLatency, latency_table
    from ctrlsparse.latency.measure import least_ms
    from ctrlsparse.layers import gated_layers
    from ctrlsparse.purge import deployed

    torch.set_num_threads(args.threads)
    _, gated, shape = build(args.model, args.size)
    x = torch.randn(args.batch, *shape)
    one = x[:1]
    latency = ExpectedLatency(gated, one, latency_table(gated, one, args.batch, torch.device("cpu")))
    if args.pattern == "steered":
        steered_pattern(gated, one, args.share, 1, latency, args.steer_least)
    else:
        random_pattern(gated, one, args.share, 1, 0)
    p = torch.cat([unit.eval_open() for _, unit in gated_layers(gated)]).double()
    timing = (x, x[:1])
    dense, purged = deployed(gated, one, timing=timing, dense=True), deployed(gated, one, timing=timing)
    print(f"formats: dense {dense.memory_format}, purged {purged.memory_format}\n")
    rows = zip(
        (t.name for t in latency.table.layers),
        predicted_ms(latency, torch.ones_like(p)),
        in_place_ms(dense.model, x, args.calls),
        predicted_ms(latency, p),
        in_place_ms(purged.model, x, args.calls),
        strict=True,
    )
    print(
        "| layer | dense predicted | dense in place | purged predicted | purged in place | share predicted | share in place |"
    )
    print("|---|---|---|---|---|---|---|")
    sums = [0.0] * 4
    for name, *ms in rows:
        sums = [s + m for s, m in zip(sums, ms, strict=True)]
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in ms) + f" | {ms[2] / ms[0]:.2f} | {ms[3] / ms[1]:.2f} |")
    print("| sum | " + " | ".join(f"{s:.2f}" for s in sums) + f" | {sums[2] / sums[0]:.3f} | {sums[3] / sums[1]:.3f} |")
    whole_dense, whole_purged = least_ms(dense.model, x, repeats=21), least_ms(purged.model, x, repeats=21)
    print(
        f"\nwhole models (least of 21): dense {whole_dense:.2f} ms, purged {whole_purged:.2f} ms, share "
        f"{whole_purged / whole_dense:.3f}; the latency model's (uncorrected) share {float(latency.uncorrected_share(p)):.3f}"
    )


if __name__ == "__main__":
    main()
