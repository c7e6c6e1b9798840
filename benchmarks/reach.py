"""How small can each torchvision classifier get? ctrlsparse's reach beside Torch-Pruning's, with exactness checks.

    .venv/bin/pip install torch-pruning==1.6.1      # optional: the peer's column (a benchmark-only dependency)
    .venv/bin/python benchmarks/reach.py             # every torchvision classification builder, 64x64 inputs
    .venv/bin/python benchmarks/reach.py --models resnet18,convnext_tiny --size 64 --jobs 2

For every classification builder of ``torchvision.models`` (random weights, BatchNorm statistics and affine
parameters and LayerNorm affine parameters randomised away from the identity, a classifier or class token
initialised at zero random, a ``--size`` x ``--size`` input,
batch 2; the ViTs built for that size), one process each:

- **ctrlsparse**: ``ctrlsparse.gate``, then every gate group closed but its first gate; *reach* is the purged
  model's MACs as a share of the dense model's (FlopCounterMode, batch 1). The three exactness checks:
  *cost = purge*: the expected cost at that 0/1 pattern equals the purged model's MACs and parameters;
  *open*: max |gated output - original output| with every gate open; *purge*: max |purged - gated eval| output,
  relative to the output's scale, on a random pattern with fractional gates.
- **Torch-Pruning** (if installed): ``DependencyGraph`` + ``MagnitudePruner`` (L1), ``pruning_ratio=0.95``,
  classifier kept (transformers: ``num_heads`` of every attention layer, ``prune_num_heads``,
  ``head_pruning_ratio=0.95``, as its ViT examples); the pruned model's MAC share with the same counter.

A builder that torch.fx cannot trace, or whose check fails, is listed with the reason; builders with more than
``--max-params`` parameters are listed as skipped (this machine's memory). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

HEADER = (
    "| model | groups | gates | ctrlsparse reach (MAC %) | cost = purge | open error | purge error | "
    "Torch-Pruning reach (MAC %) |\n|---|---|---|---|---|---|---|---|"
)


def randomised(model):
    import torch
    from torch import nn

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, nn.LayerNorm) and module.weight is not None:
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for parameter in model.parameters():  # torchvision's ViT zeroes its head and class token
            if parameter.dim() >= 2 and not parameter.any():
                parameter.normal_(0.0, parameter.shape[-1] ** -0.5)
    return model.eval()


def build(name: str, size: int):
    import torch
    import torchvision

    torch.manual_seed(0)
    fixed = {"image_size": size} if name.startswith("vit_") else {}  # a ViT's position embedding fixes its size
    return randomised(torchvision.models.get_model(name, weights=None, num_classes=10, **fixed))


def ours(name: str, size: int) -> dict:
    import torch

    import ctrlsparse
    from ctrlsparse.cost import ExpectedCost
    from ctrlsparse.layers import gated_layers
    from ctrlsparse.purge import count, purge

    torch.set_num_threads(1)
    model, x = build(name, size), torch.randn(2, 3, size, size)
    dense = count(model, x)
    gated = ctrlsparse.gate(model, x).eval()
    groups = [group for _, group in gated_layers(gated)]
    with torch.no_grad():
        for group in groups:
            group.log_alpha.fill_(5.0)
        open_error = (gated(x) - model(x)).abs().max().item()
        for group in groups:
            group.log_alpha.fill_(-10.0)
            group.log_alpha[0] = 10.0
    reached = count(purge(gated, x), x)
    pattern = torch.cat([(group.log_alpha > 0).double() for group in groups])
    costs = ExpectedCost(gated, x).costs(pattern)
    exact = (round(costs["macs"].item()), round(costs["params"].item())) == (reached.macs, reached.params)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for group in groups:
            group.log_alpha.copy_(3 * torch.randn(group.n_gates, generator=generator))
            group.log_alpha[0] = 5.0
        reference = gated(x)
        purge_error = (purge(gated, x)(x) - reference).abs().max().item() / max(1.0, reference.abs().max().item())
    return {
        "groups": len(groups),
        "gates": sum(group.n_gates for group in groups),
        "reach": 100 * reached.macs / dense.macs,
        "exact": exact,
        "open_error": open_error,
        "purge_error": purge_error,
    }


def torch_pruning(name: str, size: int) -> str:
    import torch

    from ctrlsparse.purge import count

    try:
        import torch_pruning as tp
    except ImportError:
        return "not installed"
    torch.set_num_threads(1)
    model, x = build(name, size), torch.randn(2, 3, size, size)
    dense = count(model, x)
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 10]
    heads = {  # its attention layers, as its ViT / Swin examples give them: nn.MultiheadAttention, Swin's qkv
        (m if isinstance(m, torch.nn.MultiheadAttention) else m.qkv): m.num_heads
        for m in model.modules()
        if isinstance(m, torch.nn.MultiheadAttention) or (hasattr(m, "qkv") and hasattr(m, "num_heads"))
    }
    transformer = {"num_heads": heads, "prune_num_heads": True, "prune_head_dims": False, "head_pruning_ratio": 0.95}
    try:
        pruner = tp.pruner.MagnitudePruner(
            model,
            x,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=0.95,
            ignored_layers=classifier,
            **(transformer if heads else {}),
        )
        pruner.step()
        return f"{100 * count(model.eval(), x).macs / dense.macs:.2f}"
    except Exception as error:  # the peer's limits, reported as they are
        return f"fails: {type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"


def one_row(name: str, size: int, max_params: float, peer: bool) -> str:
    start = time.time()
    try:
        model = build(name, size)
        params = sum(p.numel() for p in model.parameters())
        del model
        if params > max_params:
            return f"| {name} | skipped: {params / 1e6:.0f} M parameters (--max-params) | | | | | | |"
        found = ours(name, size)
    except Exception as error:
        where = traceback.extract_tb(error.__traceback__)[-1]
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
        return f"| {name} | fails: {reason} ({where.filename.rpartition('/')[2]}:{where.lineno}) | | | | | | |"
    theirs = torch_pruning(name, size) if peer else "-"
    return (
        f"| {name} | {found['groups']} | {found['gates']} | {found['reach']:.2f} | "
        f"{'yes' if found['exact'] else 'NO'} | {found['open_error']:.1e} | {found['purge_error']:.1e} | {theirs} |"
        f" <!-- {time.time() - start:.0f} s -->"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated builders (default: every one)")
    parser.add_argument("--size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--jobs", type=int, default=1, help="models in parallel, one thread each")
    parser.add_argument("--max-params", type=float, default=150e6, help="skip builders with more parameters")
    parser.add_argument("--no-peer", action="store_true", help="leave Torch-Pruning's column out")
    args = parser.parse_args()
    import torchvision

    names = args.models.split(",") if args.models else torchvision.models.list_models(module=torchvision.models)
    print(f"input {args.size}x{args.size}, torchvision {torchvision.__version__}\n\n{HEADER}", flush=True)
    with ProcessPoolExecutor(args.jobs, max_tasks_per_child=1) as pool:
        rows = [pool.submit(one_row, name, args.size, args.max_params, not args.no_peer) for name in names]
        for row in rows:
            print(row.result(), flush=True)


if __name__ == "__main__":
    main()
