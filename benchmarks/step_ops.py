"""Operators dispatched per training step, gated vs dense: the host-side cost that bounds a GPU step.

    .venv/bin/python benchmarks/step_ops.py                         # wrn28_10 (CIFAR-10 preset), cnn, mlp (digits)
    .venv/bin/python benchmarks/step_ops.py --archs wrn16_4 --top 15

On a GPU the host launches every operator of a step (forward, both backward passes, optimizer updates, clamps,
restarts); when their count times the per-operator host cost (~5-20 µs in PyTorch's eager mode) approaches the
kernels' time, the GPU waits for the host. The count does not depend on the machine's load, so it is measured
here on the CPU (a tiny batch: the count does not depend on it either) with torch.profiler: top-level operators
(each a launch, or a few) and all nested aten calls. ``--top`` lists the operators the gated step adds.
"""

from __future__ import annotations

import argparse
import collections

import torch
from step_overhead import make_step  # the same step the timing benchmark runs (this directory is on sys.path)
from torch.profiler import ProfilerActivity, profile


def step_ops(arch: str, method: str) -> tuple[collections.Counter, int]:
    """(top-level operator names with counts, number of all aten calls) of one training step."""
    step = make_step(arch, method, 2, torch.device("cpu"))
    step(), step()  # optimizer state exists from here on
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.events()
    top = collections.Counter(e.name for e in events if e.cpu_parent is None and not e.name.startswith("ProfilerStep"))
    return top, sum(1 for e in events if e.name.startswith("aten::"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="wrn28_10,cnn,mlp")
    parser.add_argument("--methods", default="penalized,constrained")
    parser.add_argument("--top", type=int, default=0, help="list this many operators the gated step adds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'arch':<10}{'method':<13}{'top-level':>10}{'aten':>8}{'x dense':>9}")
    for arch in args.archs.split(","):
        dense, dense_aten = step_ops(arch, "dense")
        print(f"{arch:<10}{'dense':<13}{sum(dense.values()):>10}{dense_aten:>8}{1.0:>9.2f}")
        for method in args.methods.split(","):
            gated, aten = step_ops(arch, method)
            ratio = sum(gated.values()) / sum(dense.values())
            print(f"{arch:<10}{method:<13}{sum(gated.values()):>10}{aten:>8}{ratio:>9.2f}")
            if args.top:
                added = gated.copy()
                added.subtract(dense)
                for name, count in added.most_common(args.top):
                    print(f"{'':<23}+{count:<5}{name}")


if __name__ == "__main__":
    main()
