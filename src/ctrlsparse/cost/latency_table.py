"""The latency table of a gated model on one device: each Conv / Linear timed alone at a grid of kept input columns
x kept output rows (a grouped conv: kept groups), and the dense model whole, at one batch size. Measured once and
cached by device, torch threads, batch, input shape and the layers' shapes (a JSON file under the cache
directory: ``$CTRLSPARSE_CACHE`` or ``~/.cache/ctrlsparse``), so every run of one architecture on one kind of
machine reuses it. Times are the least of repeats after a warm-up (:func:`~ctrlsparse.latency.measure.least_ms`). Here: the table, its key
and the layers' timing; :func:`ctrlsparse.cost.latency.latency_table` measures a whole table (it needs the
expected latency to split the rest) and caches it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, fx, nn

from ctrlsparse.channels import trace
from ctrlsparse.channels.algebra import Expr, Expressions
from ctrlsparse.channels.flow import Flow, gate_offsets
from ctrlsparse.latency.measure import least_ms
from ctrlsparse.layers import gated_layers

FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)  # the grid of kept channels, as fractions of a layer's width


@dataclass(frozen=True)
class LayerTiming:
    """One Conv / Linear: ``ms[i][j]`` at ``columns[i]`` kept input columns and ``rows[j]`` kept output rows; a
    grouped conv (``rows`` None): ``ms[i][0]`` at ``columns[i]`` kept groups."""

    name: str
    width: int  # output channels
    groups: int
    positions: int  # output entries per channel of one example (H x W)
    columns: list[int]
    rows: list[int] | None
    ms: list[list[float]]


@dataclass(frozen=True)
class LatencyTable:
    device: str
    batch: int
    dense_ms: float  # the dense model, whole
    rest_ms: float  # the rest's part that scales with the activations kept (norms, activations, pooling, additions)
    layers: list[LayerTiming]
    rest_fixed_ms: float = 0.0  # the rest's part that does not (per-call overhead of every op)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LatencyTable:
        data = json.loads(text)
        return cls(**{**data, "layers": [LayerTiming(**layer) for layer in data["layers"]]})


def traced_flow(model: nn.Module, example: Tensor) -> Flow:
    """The gated model's channel flow in probability expressions (what :class:`ExpectedCost` counts with)."""
    layers = [layer for _, layer in gated_layers(model)]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            graph = trace(model, example[:1])
    finally:
        model.train(training)
    return Flow(graph, Expressions(sum(layer.n_gates for layer in layers)), gate_offsets(layers))


def layer_channels(flow: Flow, node: fx.Node) -> tuple[Expr, Expr | None]:
    """What a weight node's time depends on: (kept input columns, kept output rows), or (kept groups, None) for
    a grouped conv, as the cost terms count them."""
    op = flow.graph.ops[node]
    if op.name == "conv" and op.module.groups > 1:
        if flow.reads_channels(node):
            return flow.kept_groups(node), None
        return flow.algebra.const(op.module.groups, True), None
    return flow.columns(node), flow.kept(node)


def weight_nodes(flow: Flow) -> list[fx.Node]:
    return [node for node in flow.graph.nodes if flow.graph.ops[node].kind == "weight"]


def device_name(device: torch.device) -> str:
    """What the times depend on: the processor (or GPU) and, on the CPU, torch's thread count."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    return f"cpu:{model}:threads{torch.get_num_threads()}"


def grid(width: int, gated: bool) -> list[int]:
    return sorted({max(1, round(f * width)) for f in FRACTIONS}) if gated and width > 1 else [width]


def layer_module(layer: nn.Module, columns: int, rows: int | None) -> nn.Module:
    """A plain Conv / Linear like ``layer`` with ``columns`` inputs and ``rows`` outputs (grouped: ``columns``
    groups of the layer's group width)."""
    if isinstance(layer, nn.Linear):
        return nn.Linear(columns, rows, layer.bias is not None)
    bias = True  # a BatchNorm after it is folded into its bias
    if rows is None:  # grouped: kept groups
        per_in, per_out = layer.in_channels // layer.groups, layer.out_channels // layer.groups
        return nn.Conv2d(
            columns * per_in, columns * per_out, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
            columns, bias,
        )  # fmt: skip
    return nn.Conv2d(columns, rows, layer.kernel_size, layer.stride, layer.padding, layer.dilation, 1, bias)


def layer_input(layer: nn.Module, shape: tuple[int, ...], columns: int, rows: int | None, batch: int) -> Tensor:
    """A random input of ``batch`` for :func:`layer_module` (``shape``: the layer's input at batch 1)."""
    if isinstance(layer, nn.Linear):
        return torch.randn(batch, *shape[1:-1], columns)
    channels = columns * (layer.in_channels // layer.groups) if rows is None else columns
    return torch.randn(batch, channels, *shape[2:])


def time_layer(node: fx.Node, flow: Flow, batch: int, device: torch.device) -> LayerTiming:
    """One layer's grid, a conv in the memory format that runs it faster at full width, at ``batch`` and at
    batch 1, as the purge's inference form chooses it (:func:`ctrlsparse.purge.conv_formats.conv_format`)."""
    from ctrlsparse.purge.conv_formats import conv_format

    graph = flow.graph
    op = graph.ops[node]
    layer = op.module
    in_expr, out_expr = layer_channels(flow, node)
    algebra = flow.algebra
    gated_in = not algebra.is_const(in_expr, True)
    shape = tuple(graph.shapes[op.operands[0]]) if op.operands else tuple(graph.shapes[node.args[0]])
    groups = layer.groups if isinstance(layer, nn.Conv2d) else 1
    channels_last = False
    if isinstance(layer, nn.Conv2d):
        full = layer_module(layer, groups, None) if groups > 1 else layer_module(layer, layer.in_channels, op.width)
        channels_last = conv_format(full.to(device).eval(), shape, sorted({batch, 1})) == "channels_last"
    if out_expr is None:
        columns, rows = grid(groups, gated_in), None
        ms = [[least_ms(*_built(layer, shape, c, None, batch, device, channels_last))] for c in columns]
    else:
        width_in = shape[-1] if isinstance(layer, nn.Linear) else layer.in_channels
        columns, rows = grid(width_in, gated_in), grid(op.width, not algebra.is_const(out_expr, True))
        ms = [[least_ms(*_built(layer, shape, c, r, batch, device, channels_last)) for r in rows] for c in columns]
    return LayerTiming(str(node.name), op.width, groups, graph.positions(node), columns, rows, monotone(ms))


def monotone(ms: list[list[float]]) -> list[list[float]]:
    """The times made non-decreasing in the kept columns and rows (each entry the least time of any larger
    setting at or above it): a measured smaller layer that ran slower (noise, an odd width the purge's rounding
    avoids) would make closing gates look costly and give the constraint's gradient the wrong sign."""
    table = torch.tensor(ms, dtype=torch.float64)
    table = table.flip(0).cummin(0).values.flip(0)
    table = table.flip(1).cummin(1).values.flip(1)
    return table.tolist()


def _built(layer, shape, columns, rows, batch, device, channels_last: bool) -> tuple[nn.Module, Tensor]:
    """The layer as the purge's inference form runs it (:func:`ctrlsparse.purge.deploy_form`): a conv in the
    memory format chosen for it (``channels_last`` or NCHW)."""
    module = layer_module(layer, columns, rows).to(device).eval()
    x = layer_input(layer, shape, columns, rows, batch).to(device)
    if channels_last and isinstance(module, nn.Conv2d):
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return module, x


def all_open(model: nn.Module) -> nn.Module:
    """A copy of the gated ``model`` with every gate open (eval gate 1): the dense function."""
    opened = copy.deepcopy(model).eval()
    with torch.no_grad():
        for _, layer in gated_layers(opened):
            layer.log_alpha.fill_(10.0)
    return opened


def cache_dir() -> Path:
    return Path(os.environ.get("CTRLSPARSE_CACHE") or Path.home() / ".cache" / "ctrlsparse") / "latency"


def table_key(model: nn.Module, example: Tensor, batch: int, device: torch.device) -> str:
    """Device, threads, batch, input shape and every Conv / Linear's shape: what the table's times depend on."""
    shapes = [
        [type(m).__name__, list(m.weight.shape), getattr(m, "stride", None), getattr(m, "groups", None)]
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    identity = {
        "format": 7,  # 2: the rest split into a fixed and a scaling part; 3: timed in the purge's inference form;
        # 4: its memory format chosen at the batch and at batch 1, as the purge job chooses it; 5: timed in a
        # process that keeps the memory it frees (ctrlsparse.latency.allocator); 6: each conv in its own format;
        # 7: the rest fitted to the dense, a half-open and a quarter-open model, timed interleaved
        "device": device_name(device),
        "batch": batch,
        "input": list(example.shape[1:]),
        "layers": shapes,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
