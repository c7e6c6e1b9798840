"""What sparsity buys in time: the purged model's latency share beside its MAC share, with and without channel
rounding, and Torch-Pruning's pruned model at the same MAC share, measured side by side.

    .venv/bin/pip install torch-pruning==1.6.1      # optional: the peer's column (a benchmark-only dependency)
    .venv/bin/python benchmarks/latency.py                                   # the default models, CPU, 2 threads
    .venv/bin/python benchmarks/latency.py --models resnet18,mobilenet_v2 --shares 0.5 --multiples 4,8,16
    .venv/bin/python benchmarks/latency.py --models mobilenet_v2 --shares 0,0.3,0.5 --patterns random,steered
    python3 benchmarks/latency.py --device cuda --size 224 --batches 128,1 --threads 8   # on a GPU node

Per model (torchvision's at random weights, gated by ``ctrlsparse.gate``; the registered archs with their own
gated layers, ``registered:<arch>``), a ``--size`` x ``--size`` input (the registered small ones: their data
set's shape), and per MAC share in ``--shares``:

- **pattern** (``--patterns``, ``gate_patterns.py``): *random*, the gates closed in a random order (seeded), at
  least one gate of every set kept, the longest prefix whose purged MAC share is at most the share (columns
  ``N=<m>``); *steered*, closed a step at a time where ctrlsparse's latency model (the per-layer table of latency
  budgets, measured on this machine at the first ``--batches`` size and cached) says the most time per MAC goes,
  until the share is reached, no set below ``--steer-least`` of its gates (columns ``steered N=<m>``). With
  rounding (``round_channels`` N, :func:`ctrlsparse.layers.round_channels_`), the pattern is chosen for the
  rounded counts. A share of 0: every
  gate set at its least (one gate; N with rounding), the floor of channel pruning on this runtime.
- **Torch-Pruning** (if installed): ``MagnitudePruner`` (L1, uniform per layer, classifier kept) at the pruning
  ratio bisected (12 steps) to the MAC share of our un-rounded purged model ("TP"), and with its own channel
  rounding (``round_to`` N, ``--peer-multiples``) bisected to our model's share at the same N ("TP N=16").
- **form** (``--form``): by default every model, the dense one, ours and Torch-Pruning's alike, in the purge's
  inference form (:func:`ctrlsparse.purge.deploy_form`: BatchNorms folded into their convs, the memory format
  never much slower over the ``--batches`` sizes: whose worst ratio to the faster is the lesser), as the purge
  job saves and times it; ``--form plain`` times them as built (NCHW, BatchNorms).
- **latency**: the dense model (torchvision's own module; a registered arch's every-gate-open purge), the purged
  ones and Torch-Pruning's, one call of each in turn after a warm-up, at least ``--rounds`` rounds and about
  ``--seconds`` each (:func:`ctrlsparse.latency.interleaved_times`), at batch 16 and 1 (``--batches``), on the
  CPU with ``--threads`` threads (``--device cuda``: on the GPU, every call synchronised, fp32 with cuDNN's
  autotuned algorithms; the gate patterns, purges, Torch-Pruning and MAC counts on the CPU). *lat.* = the median over rounds of the model's time over the dense model's in
  the same round (:func:`ctrlsparse.latency.median_share`), the median of ``--repeats`` such measurements; *dense
  ms*: the dense model's median.
- **formats**: each model's memory format in the timed form (``cl`` channels-last, ``nchw``, ``mix``: each conv
  in its own, :mod:`ctrlsparse.purge.conv_formats`), in column order (dense first).
- **extra ops**: the purged graph's ``index_select``, ``index_add``, ``cat`` and ``mul`` nodes beyond the dense graph's (what the
  purge inserted: re-indexing, zero padding, fractional gates), in the timed form (the inference form's folds
  applied, :mod:`ctrlsparse.purge.index_folds`).

Prints a Markdown table per batch size.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

MODELS = (
    "resnet18,resnet50,mobilenet_v2,efficientnet_b0,regnet_x_400mf,"
    "registered:resnet18,registered:wrn16_4,registered:cnn,registered:lenet5,registered:mlp"
)
SMALL_SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "lenet5": (1, 28, 28), "vit": (1, 8, 8)}


def build(name: str, size: int):
    """(dense model, gated model, input shape): torchvision's (random weights, BatchNorms away from the identity,
    as ``reach.py`` builds them) or a registered arch (``registered:<arch>``; its dense model: every gate open)."""
    import torch
    from reach import build as torchvision_model
    from reach import randomised

    import ctrlsparse
    from ctrlsparse.models.factory import LayerFactory
    from ctrlsparse.purge import purge_dense
    from ctrlsparse.registry import ARCHS

    torch.manual_seed(0)
    if name.startswith("registered:"):
        arch = name.partition(":")[2]
        shape = SMALL_SHAPES.get(arch, (3, size, size))
        gated = randomised(ARCHS[arch](shape, 10, LayerFactory(gated=True)))
        return purge_dense(gated, torch.randn(2, *shape)), gated, shape
    dense, shape = torchvision_model(name, size), (3, size, size)
    return dense, ctrlsparse.gate(dense, torch.randn(2, *shape)).eval(), shape


def torch_pruning(dense, x, share: float, multiple: int = 1):
    """Torch-Pruning's L1 magnitude pruning at the ratio bisected to ``share`` of the MACs (its ``round_to``
    ``multiple`` when > 1); (model, its share)."""
    import torch
    import torch_pruning as tp

    from ctrlsparse.purge import count

    dense_macs = count(dense, x).macs

    def pruned(ratio: float):
        model = copy.deepcopy(dense).eval()
        classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]
        tp.pruner.MagnitudePruner(
            model,
            x,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=ratio,
            ignored_layers=classifier,
            round_to=multiple if multiple > 1 else None,
        ).step()
        return model.eval(), count(model, x).macs / dense_macs

    low, high, best = 0.0, 0.99, None
    for _ in range(12):
        middle = (low + high) / 2
        model, macs = pruned(middle)
        if best is None or abs(macs - share) < abs(best[1] - share):
            best = (model, macs)
        low, high = (middle, high) if macs > share else (low, middle)
    return best


def extra_ops(purged, dense) -> int:
    """``index_select``, ``index_add``, ``cat`` and ``mul`` call_function nodes of ``purged`` beyond those of
    ``dense``."""
    import torch
    from torch import fx

    def found(model) -> int:
        if not isinstance(model, fx.GraphModule):
            model = fx.symbolic_trace(model)
        kinds = (torch.index_select, torch.index_add, torch.cat, torch.mul)
        return sum(1 for n in model.graph.nodes if n.op == "call_function" and n.target in kinds)

    try:
        return found(purged) - found(dense)
    except Exception:  # a dense module fx cannot trace
        return -1


def one_model(name: str, args) -> list[dict]:
    import torch
    from gate_patterns import random_pattern, steered_pattern

    from ctrlsparse.latency import interleaved_times, median_share
    from ctrlsparse.purge import count, deploy_form, purge

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dense, gated, shape = build(name, args.size)
    x = torch.randn(2, *shape)
    dense_macs = count(dense, x).macs
    latency = None
    if "steered" in args.patterns:  # the latency model of ctrlsparse's latency budgets, at the first batch size
        from ctrlsparse.cost.latency import ExpectedLatency, latency_table

        table = latency_table(gated.to(device), x.to(device), args.batches[0], device)  # measured on the device
        latency = ExpectedLatency(gated.cpu(), x, table)  # the patterns are set and purged on the CPU
    rows = []
    for share in args.shares:
        models, shares = {"dense": dense}, {"dense": 1.0}
        for pattern in args.patterns:
            for multiple in args.multiples:
                if pattern == "steered":
                    steered_pattern(gated, x, share, multiple, latency, args.steer_least)
                else:
                    random_pattern(gated, x, share, multiple, args.seed)
                purged = purge(gated, x)
                models[column(pattern, multiple)] = purged
                shares[column(pattern, multiple)] = count(purged, x).macs / dense_macs
        first = column(args.patterns[0], args.multiples[0])
        for multiple in args.peer_multiples if args.peer else ():
            key = "TP" if multiple == 1 else f"TP N={multiple}"
            target = shares.get(column(args.patterns[0], multiple), shares[first])
            try:
                models[key], shares[key] = torch_pruning(dense, x, target, multiple)
            except Exception as error:
                print(f"{name}: Torch-Pruning fails: {type(error).__name__}: {str(error)[:100]}", flush=True)
        formats = dict.fromkeys(models, "nchw")
        if device.type != "cpu":  # copies: the dense model serves the next share on the CPU
            models = {key: copy.deepcopy(model).to(device) for key, model in models.items()}
        x_device = x.to(device)
        if args.form == "deploy":  # every model as the purge job saves and times it; MACs counted before
            # each model's memory format chosen over the batch sizes, as the purge job chooses it
            timing = [torch.randn(batch, *shape, device=device) for batch in args.batches]
            forms = {key: deploy_form(model, x_device, timing=timing) for key, model in models.items()}
            models = {key: form.model for key, form in forms.items()}
            labels = {"channels_last": "cl", "contiguous": "nchw", "mixed": "mix"}
            formats = {key: labels[form.memory_format] for key, form in forms.items()}
        extra = extra_ops(models[first], models["dense"])
        for batch in args.batches:
            inputs = torch.randn(batch, *shape, device=device)
            runs = [
                interleaved_times(models, inputs, seconds=args.seconds, min_rounds=args.rounds)
                for _ in range(args.repeats)
            ]
            rows.append(
                {
                    "model": name,
                    "target": share,
                    "batch": batch,
                    "dense_ms": statistics.median(1000.0 * statistics.median(times["dense"]) for times in runs),
                    "extra_ops": extra,
                    "formats": "/".join(formats.values()),
                    **{f"{key} macs": value for key, value in shares.items() if key != "dense"},
                    **{
                        f"{key} lat": statistics.median(median_share(times, key, "dense") for times in runs)
                        for key in models
                        if key != "dense"
                    },
                }
            )
    return rows


def column(pattern: str, multiple: int) -> str:
    """A column of ours: ``N=<multiple>`` (random pattern), ``steered N=<multiple>``."""
    return f"N={multiple}" if pattern == "random" else f"{pattern} N={multiple}"


def table(rows: list[dict], batch: int, args, peers: list[int]) -> str:
    columns = [column(p, m) for p in args.patterns for m in args.multiples]
    columns += ["TP" if m == 1 else f"TP N={m}" for m in peers]
    head = "| model | target | dense ms | " + " | ".join(f"{c} MAC | {c} lat." for c in columns) + " | extra ops |"
    lines = [head + " formats |", "|" + "---|" * (5 + 2 * len(columns))]
    for row in rows:
        if row["batch"] != batch:
            continue
        cells = []
        for c in columns:
            cells += [f"{row.get(f'{c} macs', float('nan')):.3f}", f"{row.get(f'{c} lat', float('nan')):.3f}"]
        lines.append(
            f"| {row['model']} | {row['target']} | {row['dense_ms']:.2f} | "
            + " | ".join(cells)
            + f" | {row['extra_ops']} | {row['formats']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS, help="comma-separated torchvision builders or registered:<arch>")
    parser.add_argument("--shares", default="0.3,0.5", help="target MAC shares")
    parser.add_argument(
        "--patterns",
        default="random",
        help="ours' gate patterns, comma-separated: random (a random closing order), steered (closed where the "
        "latency model saves the most time per MAC); see gate_patterns.py",
    )
    parser.add_argument(
        "--steer-least",
        type=float,
        default=0.25,
        help="steered: no gate set below this share of its gates (a stand-in for accuracy; 0: down to one)",
    )
    parser.add_argument("--multiples", default="1,8", help="round_channels values (1: no rounding; first: TP's share)")
    parser.add_argument("--batches", default="16,1", help="batch sizes")
    parser.add_argument("--size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the models are timed (cpu, cuda); cuDNN autotunes its algorithms on cuda (cudnn.benchmark), "
        "as a serving runtime does; patterns, purges and Torch-Pruning run on the CPU",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per model set and batch")
    parser.add_argument("--rounds", type=int, default=9, help="at least this many interleaved rounds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random gate patterns")
    parser.add_argument(
        "--repeats", type=int, default=1, help="measure each model set this many times; report the medians"
    )
    parser.add_argument("--no-peer", action="store_true", help="leave Torch-Pruning out")
    parser.add_argument(
        "--peer-multiples",
        default="1,16",
        help="Torch-Pruning's round_to values (1: none), each bisected to our "
        "model's MAC share at the same N (or the first --multiples')",
    )
    parser.add_argument(
        "--form",
        choices=("deploy", "plain"),
        default="deploy",
        help="deploy: every model (dense, ours, Torch-Pruning's) in the purge's inference form (BatchNorms folded, "
        "channels last); plain: as built (NCHW, BatchNorms)",
    )
    args = parser.parse_args()
    args.shares = [float(s) for s in args.shares.split(",")]
    args.multiples = [int(m) for m in args.multiples.split(",")]
    args.patterns = args.patterns.split(",")
    unknown = sorted(set(args.patterns) - {"random", "steered"})
    if unknown:
        parser.error(f"--patterns: {unknown[0]!r} is not a pattern; use random and/or steered")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.peer_multiples = [int(m) for m in args.peer_multiples.split(",")]
    try:
        import torch_pruning  # noqa: F401

        args.peer = not args.no_peer
    except ImportError:
        args.peer = False
    peers = args.peer_multiples if args.peer else []
    import torch

    from ctrlsparse.cost.latency_table import device_name

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    print(
        f"{device_name(device)}, {args.threads} threads, torch {torch.__version__}, input {args.size}x{args.size}, "
        f"{args.form} form",
        flush=True,
    )
    rows = []
    for name in args.models.split(","):
        start = time.time()
        try:
            rows += one_model(name, args)
        except Exception as error:
            print(f"{name}: fails: {type(error).__name__}: {str(error)[:200]}", flush=True)
        print(f"<!-- {name}: {time.time() - start:.0f} s -->", flush=True)
        for batch in args.batches:
            print(f"\nbatch {batch}\n\n" + table([r for r in rows if r["model"] == name], batch, args, peers))
    for batch in args.batches:
        print(f"\n## batch {batch}\n\n" + table(rows, batch, args, peers), flush=True)


if __name__ == "__main__":
    main()
