"""Does the latency model predict the purged model's time, and what does steering by its gradient buy? Per model
and MAC share, gate patterns side by side in one run: the latency model's predicted share (before any run's
calibration: :meth:`ctrlsparse.cost.latency.ExpectedLatency.uncorrected_share`) beside the purged model's measured
share, and Torch-Pruning's at the same MAC share.

    .venv/bin/python benchmarks/latency_model.py                                  # resnet18, 224x224, batch 1
    .venv/bin/python benchmarks/latency_model.py --models resnet18,regnet_x_400mf --batch 16 --shares 0.3,0.5

Patterns (``gate_patterns.py``; the models are ``latency.py``'s ``build``): *random* (a random closing order, the
prefix bisected to the share), *uniform* (every gate set keeps the same fraction of its gates: Torch-Pruning's
shape, with our gates), *steered* (closed a step at a time where the latency model's gradient says the most time
per MAC goes, no set below ``--steer-least``), and *steered (clamp)*: the same greedy steps by the gradient the
latency model had before 2026-12-05, when its interpolation clamped each layer's kept count to the table's grid
with ``torch.clamp``, whose gradient is 0 at either bound: at all-open every layer sits at the top of its grid, so
only the rest's share of the gradient was left, and a set once narrowed kept being chosen. The table is the one
ctrlsparse's latency budgets use (measured on this machine at ``--batch`` and cached). Every model in the purge's
inference form, timed interleaved with the dense one (medians of ratios over rounds).
"""

from __future__ import annotations

import argparse
import contextlib


def clamp_interpolate(grid, values, x):
    """The latency model's interpolation before 2026-12-05 (``torch.clamp`` at the grid's ends)."""
    import torch

    if len(grid) == 1:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.zeros((), dtype=torch.long, device=x.device), 1.0 - zero, zero
    x = x.clamp(float(grid[0]), float(grid[-1]))
    index = (torch.searchsorted(grid, x.detach().reshape(1), right=True) - 1).clamp(0, len(grid) - 2)[0]
    low, high = grid[index], grid[index + 1]
    weight = (x - low) / (high - low)
    return index, 1.0 - weight, weight


@contextlib.contextmanager
def clamped_gradient():
    import ctrlsparse.cost.latency as latency_module

    kept = latency_module.interpolate
    latency_module.interpolate = clamp_interpolate
    try:
        yield
    finally:
        latency_module.interpolate = kept


def one_model(name: str, args) -> list[str]:
    import torch
    from gate_patterns import random_pattern, steered_pattern, uniform_pattern
    from latency import build, torch_pruning

    from ctrlsparse.cost.latency import ExpectedLatency, latency_table
    from ctrlsparse.latency import interleaved_times, median_share
    from ctrlsparse.layers import gated_layers
    from ctrlsparse.purge import count, deploy_form, purge

    dense, gated, shape = build(name, args.size)
    x = torch.randn(2, *shape)
    dense_macs = count(dense, x).macs
    table = latency_table(gated, x, args.batch, torch.device("cpu"))
    latency = ExpectedLatency(gated, x, table)
    print(
        f"<!-- {name}: table's dense model {table.dense_ms:.2f} ms, the rest {table.rest_fixed_ms:.2f} ms fixed + "
        f"{table.rest_ms:.2f} ms x activations kept -->",
        flush=True,
    )
    inputs = torch.randn(args.batch, *shape)
    lines = []
    for share in args.shares:
        models, predicted = {"dense": dense}, {}
        for pattern in ("random", "uniform", "steered (clamp)", "steered"):
            if pattern == "random":
                random_pattern(gated, x, share, 1, args.seed)
            elif pattern == "uniform":
                uniform_pattern(gated, x, share)
            elif pattern == "steered":
                steered_pattern(gated, x, share, 1, latency, args.steer_least)
            else:
                with clamped_gradient():
                    steered_pattern(gated, x, share, 1, latency, args.steer_least)
            opened = torch.cat([unit.eval_open() for _, unit in gated_layers(gated)]).double()
            if pattern.startswith("steered"):  # where it put the channels: kept / all, per gate set
                kept = " ".join(f"{int(u.eval_open().sum())}/{u.n_gates}" for _, u in gated_layers(gated))
                print(f"<!-- {name} at {share}, {pattern}: {kept} -->", flush=True)
            predicted[pattern] = float(latency.uncorrected_share(opened))
            models[pattern] = purge(gated, x)
        if args.peer:
            models["TP"], _ = torch_pruning(dense, x, count(models["random"], x).macs / dense_macs)
        forms = {key: deploy_form(model, x, timing=[inputs]).model for key, model in models.items()}
        times = interleaved_times(forms, inputs, seconds=args.seconds, min_rounds=args.rounds)
        for key, model in models.items():
            if key == "dense":
                continue
            guess = f"{predicted[key]:.3f}" if key in predicted else "-"
            lines.append(
                f"| {name} | {share} | {key} | {count(model, x).macs / dense_macs:.3f} | {guess} | "
                f"{median_share(times, key, 'dense'):.3f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="resnet18", help="comma-separated torchvision builders or registered:<arch>"
    )
    parser.add_argument("--shares", default="0.3,0.5", help="target MAC shares")
    parser.add_argument("--batch", type=int, default=1, help="the batch the table is measured and models timed at")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steer-least", type=float, default=0.25, help="steered: no gate set below this share")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per model set")
    parser.add_argument("--rounds", type=int, default=15, help="at least this many interleaved rounds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pattern")
    parser.add_argument("--no-peer", action="store_true", help="leave Torch-Pruning out")
    args = parser.parse_args()
    args.shares = [float(s) for s in args.shares.split(",")]
    try:
        import torch_pruning  # noqa: F401

        args.peer = not args.no_peer
    except ImportError:
        args.peer = False
    import torch

    from ctrlsparse.cost.latency_table import device_name

    torch.set_num_threads(args.threads)
    print(f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, {args.size}x{args.size}, batch {args.batch}")
    print(
        "\n| model | MAC target | pattern | MAC share | predicted | measured |\n|---|---|---|---|---|---|", flush=True
    )
    for name in args.models.split(","):
        for line in one_model(name, args):
            print(line, flush=True)


if __name__ == "__main__":
    main()
