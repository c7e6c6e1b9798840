"""What the allocator does to a latency share: a dense model and its purged model timed on glibc's defaults and
while the process keeps the memory it frees (``ctrlsparse.latency.allocator.freed_memory_kept``, as every
measurement of ctrlsparse now runs), side by side in one process.

    .venv/bin/python benchmarks/page_faults.py --model mobilenet_v2 --size 64 --batch 128
    .venv/bin/python benchmarks/page_faults.py --model efficientnet_b0 --size 224 --batch 16

The model is torchvision's at random weights (``latency.py``'s ``build``), gated, its gates closed in a random
order to ``--share`` of its MACs (``gate_patterns.random_pattern``); both models in their inference forms
(``ctrlsparse.purge.deploy_form``, channels-last where it runs). ``--rounds`` rounds on glibc's defaults, then as
many with the memory kept (entered anew each round; the defaults first, as leaving it does not restore glibc's
dynamic thresholds); each round calls the dense and the purged model in turn, two warm-up calls and ``--calls``
timed ones each. Per model and allocator: the median ms per call, minor page faults and kernel (system) ms per call
(``resource.getrusage``), and the purged share of the dense time. glibc maps a block over its mmap threshold
(32 MB at most) afresh and unmaps it on free, so where activations pass 32 MB the defaults fault them in every
call; the share is then partly the allocator's.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import time


def timed_call(model, x) -> tuple[float, int, float]:
    """(wall ms, minor page faults, kernel ms) of one call."""
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model(x)
    wall, after = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    return 1000 * wall, after.ru_minflt - before.ru_minflt, 1000 * (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", help="a torchvision builder")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--share", type=float, default=0.3, help="MAC share of the purged model's random pattern")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per model and round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from gate_patterns import random_pattern
    from latency import build

    from ctrlsparse.latency.allocator import freed_memory_kept
    from ctrlsparse.purge import count, deploy_form, purge

    torch.set_num_threads(args.threads)
    dense, gated, shape = build(args.model, args.size)
    x2 = torch.randn(2, *shape)
    random_pattern(gated, x2, args.share, 1, 0)
    purged = purge(gated, x2)
    share = count(purged, x2).macs / count(dense, x2).macs
    x = torch.randn(args.batch, *shape)
    # channels-last where it runs (untimed: a timed choice would measure with the memory kept before the defaults)
    models = {name: deploy_form(m, x2[:1]).model for name, m in (("dense", dense), ("purged", purged))}
    calls: dict[tuple[str, str], list[tuple[float, int, float]]] = {}
    with torch.inference_mode():
        for allocator in ("glibc defaults", "memory kept"):  # glibc's own thresholds are not restored after
            for _ in range(args.rounds):
                with freed_memory_kept() if allocator == "memory kept" else contextlib.nullcontext():
                    for name, model in models.items():
                        for _ in range(2):  # warm-up: the heap's free blocks settle
                            model(x)
                        calls.setdefault((allocator, name), []).extend(timed_call(model, x) for _ in range(args.calls))
    print(f"{args.model}, {args.size}x{args.size}, batch {args.batch}, {args.threads} threads, MAC share {share:.3f}")
    print("\n| allocator | model | ms / call | page faults / call | kernel ms / call | purged share |")
    print("|---|---|---|---|---|---|")
    for allocator in ("glibc defaults", "memory kept"):
        ms = {name: statistics.median(c[0] for c in calls[(allocator, name)]) for name in models}
        for name in models:
            faults = statistics.median(c[1] for c in calls[(allocator, name)])
            kernel = statistics.median(c[2] for c in calls[(allocator, name)])
            ratio = f"{ms['purged'] / ms['dense']:.3f}" if name == "purged" else ""
            print(f"| {allocator} | {name} | {ms[name]:.1f} | {faults:,.0f} | {kernel:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
