"""What sparsity buys at inference: latency of purged vs dense models beside their MAC ratio.

For each architecture and layer-wise density ε, a gated model keeps a random ε share of the groups of every gated
layer (eval gates exactly 0 or 1) and is purged; the dense reference is the same model with every gate open, purged
the same way (so both are the same kind of module and differ only in width). Both run side by side: repeats
interleave dense and purged calls, each repeat times a few calls, and the medians are compared.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/purge_speed.py                  # digits mlp/cnn, lenet5, wrn16_4
    .venv/bin/python benchmarks/purge_speed.py --archs cnn --batches 1 --repeats 50

Prints, per row: latency ratio (purged / dense), MAC ratio, and their quotient; the goal is latency ratio <=
1.25 x MAC ratio at ε = 0.3 and 0.5. Runs on the CPU, or on CUDA with --device cuda (synchronised timing).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from ctrlsparse.layers import gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.purge import count, purge
from ctrlsparse.registry import ARCHS

# (arch, input shape, classes): the digits models, and the paper's MNIST LeNet5 and a small WRN where registered.
CASES = {
    "mlp": ((1, 8, 8), 10),
    "cnn": ((1, 8, 8), 10),
    "mlp-mnist": ((1, 28, 28), 10),
    "lenet5": ((1, 28, 28), 10),
    "wrn16_4": ((3, 32, 32), 10),
}
GOAL = 1.25


def gated_at_density(arch: str, shape: tuple[int, ...], classes: int, density: float, seed: int = 0) -> nn.Module:
    """A gated model whose every gated layer keeps a random ``density`` share of its groups (gates 0 or 1)."""
    torch.manual_seed(seed)
    model = ARCHS[arch.split("-")[0]](shape, classes, LayerFactory())
    with torch.no_grad():
        for _, layer in gated_layers(model):
            keep = torch.randperm(layer.n_gates)[: max(1, round(density * layer.n_gates))]
            layer.log_alpha.fill_(-5.0)
            layer.log_alpha[keep] = 5.0
    return model.eval()


def seconds_per_call(model: nn.Module, x: torch.Tensor, calls: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / calls


def calls_for(model: nn.Module, x: torch.Tensor, device: torch.device, budget: float = 0.02) -> int:
    """Calls per timed repeat so that a repeat of the dense model takes about ``budget`` seconds."""
    once = seconds_per_call(model, x, 1, device)
    return max(1, min(1000, int(budget / max(once, 1e-7))))


@torch.inference_mode()
def compare(models: dict[str, nn.Module], x: torch.Tensor, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each model, timed in interleaved repeats (after one warm-up repeat)."""
    calls = calls_for(models["dense"], x, device)
    times: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats + 1):
        for name, model in models.items():
            elapsed = seconds_per_call(model, x, calls, device)
            if repeat:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(CASES), help="comma-separated cases (%(default)s)")
    parser.add_argument("--densities", default="0.3,0.5,0.7", help="layer-wise densities (%(default)s)")
    parser.add_argument("--batches", default="1,64", help="batch sizes (%(default)s)")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per model (%(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (%(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (%(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    densities = [float(d) for d in args.densities.split(",")]
    print(f"device {device} ({args.threads} threads), torch {torch.__version__}, {args.repeats} interleaved repeats")
    header = f"{'arch':<10} {'ε':>4} {'batch':>5} {'dense ms':>9} {'purged ms':>9} {'lat ratio':>9} {'MAC ratio':>9} {'lat/MAC':>8}"
    print(header)
    for case in args.archs.split(","):
        if case.split("-")[0] not in ARCHS:
            print(f"{case:<10} not registered; skipped")
            continue
        shape, classes = CASES[case]
        example = torch.zeros(1, *shape)
        dense = purge(gated_at_density(case, shape, classes, 1.0), example).to(device)
        purged = {d: purge(gated_at_density(case, shape, classes, d), example).to(device) for d in densities}
        dense_macs = count(dense, example.to(device)).macs
        for batch in map(int, args.batches.split(",")):
            x = torch.randn(batch, *shape, device=device)
            timed = compare({"dense": dense, **{str(d): m for d, m in purged.items()}}, x, args.repeats, device)
            for d, model in purged.items():
                latency = timed[str(d)] / timed["dense"]
                macs = count(model, example.to(device)).macs / dense_macs
                verdict = "" if d > 0.5 else ("  ok" if latency <= GOAL * macs else "  over goal")
                print(
                    f"{case:<10} {d:>4.1f} {batch:>5} {1e3 * timed['dense']:>9.3f} {1e3 * timed[str(d)]:>9.3f} "
                    f"{latency:>9.3f} {macs:>9.3f} {latency / macs:>8.2f}{verdict}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
