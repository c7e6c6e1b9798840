"""Where a purged model's time goes: each Conv / Linear / BatchNorm of the dense and the purged model timed in
place (forward hooks, the least of ``--calls`` calls), beside its MAC share, summed by layer kind.

    .venv/bin/python benchmarks/latency_layers.py --model mobilenet_v2 --share 0.5
    .venv/bin/python benchmarks/latency_layers.py --model resnet18 --share 0.5 --form plain
    .venv/bin/python benchmarks/latency_layers.py --model registered:cnn --batch 128 --threads 1 --memory-format nchw

The models are ``benchmarks/latency.py``'s (``build``), their gates set by ``gate_patterns.py`` (``--pattern``:
random, a random closing order, the prefix bisected to ``--share`` of the MACs; steered, closed where the latency
model saves the most time per MAC). ``--form deploy`` (default): both in the purge's inference form
(``ctrlsparse.purge.deploy_form``, the memory format timed at ``--batch`` unless ``--memory-format`` forces one);
``plain``: as built (NCHW, BatchNorms). Kinds: ``depthwise/grouped`` (groups > 1), ``pointwise`` (1x1), ``kxk``
(other convs), ``linear``, ``norm`` (BatchNorms; none in the inference form). A layer's MACs: output elements x
input channels per group x kernel area (per example); its time includes the hook's own few microseconds.
"""

from __future__ import annotations

import argparse
import copy
import time


def kind(module) -> str:
    import torch

    if isinstance(module, torch.nn.Linear):
        return "linear"
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        return "norm"
    if module.groups > 1:
        return "depthwise/grouped"
    return "pointwise" if module.kernel_size == (1, 1) else "kxk"


def per_layer(model, x, calls: int) -> dict[str, tuple[str, float, float]]:
    """name -> (kind, least ms, MACs of the batch) of every Conv2d / Linear / BatchNorm called in ``model(x)``."""
    import torch

    from ctrlsparse.latency.allocator import freed_memory_kept

    layers = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.modules.batchnorm._BatchNorm)
    times: dict[str, list[float]] = {}
    macs: dict[str, float] = {}
    hooks = []
    for name, module in model.named_modules():
        if not isinstance(module, layers):
            continue

        def before(m, args):
            m._began = time.perf_counter()

        def after(m, args, out, name=name):
            times.setdefault(name, []).append(time.perf_counter() - m._began)
            if isinstance(m, torch.nn.Conv2d):
                per_group = m.in_channels // m.groups
                macs[name] = out[0].numel() * per_group * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, torch.nn.Linear):
                macs[name] = out[0].numel() * m.in_features
            else:
                macs[name] = 0.0

        hooks += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    with torch.no_grad(), freed_memory_kept():  # as the library times: no page faulted in afresh a call
        for _ in range(calls):
            model(x)
    for hook in hooks:
        hook.remove()
    named = dict(model.named_modules())
    return {name: (kind(named[name]), 1000 * min(t), macs[name]) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", help="a torchvision builder or registered:<arch>")
    parser.add_argument("--share", type=float, default=0.5, help="MAC share of the random gate pattern")
    parser.add_argument("--multiple", type=int, default=1, help="round_channels of the pattern")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="input side in pixels (torchvision models)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--form", choices=("deploy", "plain"), default="deploy")
    parser.add_argument("--memory-format", choices=("timed", "cl", "nchw"), default="timed")
    parser.add_argument(
        "--pattern", choices=("random", "steered"), default="random", help="the gate pattern (gate_patterns.py)"
    )
    parser.add_argument("--steer-least", type=float, default=0.25, help="steered: no gate set below this share")
    parser.add_argument("--layers", action="store_true", help="print every layer, not only the kinds")
    args = parser.parse_args()

    import torch
    from gate_patterns import random_pattern, steered_pattern
    from latency import build

    from ctrlsparse.purge import count, deploy_form, purge

    torch.set_num_threads(args.threads)
    dense, gated, shape = build(args.model, args.size)
    example = torch.randn(2, *shape)
    if args.pattern == "steered":
        from ctrlsparse.cost.latency import ExpectedLatency, latency_table

        table = latency_table(gated, example, args.batch, torch.device("cpu"))
        latency = ExpectedLatency(gated, example, table)
        steered_pattern(gated, example, args.share, args.multiple, latency, args.steer_least)
    else:
        random_pattern(gated, example, args.share, args.multiple, seed=0)
    purged = purge(gated, example)
    x = torch.randn(args.batch, *shape)
    models = {"dense": dense.eval(), "purged": purged}
    if args.form == "deploy":
        models = {key: deploy_form(model, example, timing=x).model for key, model in models.items()}
        if args.memory_format != "timed":
            fmt = torch.channels_last if args.memory_format == "cl" else torch.contiguous_format
            models = {key: copy.deepcopy(model).to(memory_format=fmt) for key, model in models.items()}
    share = count(purged, example).macs / count(dense, example).macs

    def memory_format(model) -> str:  # a conv weight with more than one input channel tells the two apart
        weights = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1]
        return "cl" if weights and weights[0].is_contiguous(memory_format=torch.channels_last) else "nchw"

    formats = {key: memory_format(model) for key, model in models.items()}
    print(
        f"{args.model}, MAC share {share:.3f}, batch {args.batch}, {args.threads} threads, {args.form} form, "
        f"memory format {formats}"
    )
    timed = {key: per_layer(model, x, args.calls) for key, model in models.items()}
    dense_layers, purged_layers = timed["dense"], timed["purged"]
    if args.layers:
        print("| layer | kind | dense ms | purged ms | time share | MAC share |\n|---|---|---|---|---|---|")
        for (name, (k, ms, macs)), (_, pms, pmacs) in zip(dense_layers.items(), purged_layers.values(), strict=False):
            print(f"| {name} | {k} | {ms:.3f} | {pms:.3f} | {pms / ms:.2f} | {pmacs / macs if macs else 0:.2f} |")
    print("\n| kind | dense ms | purged ms | time share | MAC share |\n|---|---|---|---|---|")
    for k in ("depthwise/grouped", "pointwise", "kxk", "linear", "norm"):
        d = [v for v in dense_layers.values() if v[0] == k]
        p = [v for v in purged_layers.values() if v[0] == k]
        if not d:
            continue
        dms, pms = sum(v[1] for v in d), sum(v[1] for v in p)
        dmacs, pmacs = sum(v[2] for v in d), sum(v[2] for v in p)
        print(f"| {k} | {dms:.3f} | {pms:.3f} | {pms / dms:.2f} | {pmacs / dmacs if dmacs else 0:.2f} |")


if __name__ == "__main__":
    main()
