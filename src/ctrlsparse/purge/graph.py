"""Trace a model into a torch.fx graph and sort its nodes into the kinds the purge knows.

Gated layers and ``L0BatchNorm2d`` are leaves of the trace (their forward draws gates / takes a mask). A call
such as ``bn(x, conv.active_channels())`` traces into a call of the BatchNorm with a constant mask (the eval
gates' mask, since the model is traced in eval mode after one eval forward). Shapes come from one forward of an
example input through the traced graph.

Kinds (what the purge may do with the tensor's channels, dim 1):

- ``weight``: Conv2d / Linear (gated or not): slice input columns and output rows.
- ``depthwise``: a dense Conv2d with ``groups == in == out channels`` (channel c reads only channel c): slice
  its filters with the channels it keeps, as a channel-wise op (zero stays zero when it has no bias).
- ``batchnorm``: BatchNorm2d / L0BatchNorm2d: slice its per-channel parameters.
- ``channelwise``: ops that act on each channel alone and map zero to zero (ReLU, SiLU, GELU, tanh, pooling,
  dropout, identity).
- ``add``: tensor + tensor (the residual add).
- ``flatten``: (N, C, H, W) -> (N, C*H*W).
- ``batch_size``: ``x.size(0)``, which does not read channels.
- ``other``: anything else; it gets its inputs at full width (zero-padded), which is always exact.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ctrlsparse.layers import GatedLayer, L0BatchNorm2d

CHANNELWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.SiLU,
    nn.Hardswish,
    nn.GELU,
    nn.LeakyReLU,
    nn.Tanh,
)
CHANNELWISE_FUNCTIONS = {
    F.relu,
    F.relu6,
    torch.relu,
    torch.relu_,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.dropout,
    F.silu,
    F.hardswish,
    F.gelu,
    F.leaky_relu,
    torch.tanh,
}
CHANNELWISE_METHODS = {"relu", "relu_"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
ADD_METHODS = {"add", "add_"}
FLATTEN_METHODS = {"flatten", "view", "reshape"}


class GatedTracer(fx.Tracer):
    """torch.fx tracer that keeps gated layers and masked BatchNorms as single calls."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, GatedLayer | L0BatchNorm2d) or super().is_leaf_module(module, qualified_name)


@dataclass
class Traced:
    """A traced model: its graph module, its submodules by name, and each node's output shape."""

    module: fx.GraphModule
    modules: dict[str, nn.Module]
    shapes: dict[fx.Node, tuple[int, ...] | None]

    def channels(self, node: fx.Node) -> int | None:
        """Width of dim 1 of the node's tensor output, or None when it is not a tensor of rank >= 2."""
        shape = self.shapes.get(node)
        return shape[1] if shape is not None and len(shape) >= 2 else None

    def constant(self, node: fx.Node) -> torch.Tensor:
        value = self.module
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value  # type: ignore[return-value]


@torch.no_grad()
def trace(model: nn.Module, example: torch.Tensor, tracer: fx.Tracer | None = None) -> Traced:
    """Trace ``model`` (which must be in eval mode; with ``tracer``, default :class:`GatedTracer`) and record
    every node's output shape on ``example``."""
    model(example)  # sets each gated layer's last gates to its eval gates, which the trace captures as masks
    graph = (tracer or GatedTracer()).trace(model)
    module = fx.GraphModule(model, graph)
    ShapeProp(module).propagate(example)
    shapes = {}
    for node in graph.nodes:
        meta = node.meta.get("tensor_meta")
        shapes[node] = tuple(meta.shape) if hasattr(meta, "shape") else None
    return Traced(module, dict(module.named_modules()), shapes)


def kind(node: fx.Node, traced: Traced) -> str:
    """The purge's kind of one node (see the module docstring)."""
    if node.op in ("placeholder", "get_attr", "output"):
        return node.op
    if node.op == "call_module":
        module = traced.modules[str(node.target)]
        if isinstance(module, nn.Conv2d) and module.groups == module.in_channels == module.out_channels > 1:
            return "depthwise"
        if isinstance(module, nn.Conv2d) or (isinstance(module, nn.Linear) and _rank(node.args[0], traced) == 2):
            return "weight"  # a Linear on (N, T, F) acts on the last dim, not dim 1: left to "other"
        if isinstance(module, nn.BatchNorm2d):
            return "batchnorm"
        if isinstance(module, CHANNELWISE_MODULES):
            return "channelwise"
        if isinstance(module, nn.Flatten) and _is_flatten(node, traced):
            return "flatten"
        return "other"
    if node.op == "call_function" and node.target in CHANNELWISE_FUNCTIONS and not _returns_indices(node):
        return "channelwise"
    if node.op == "call_method" and node.target in CHANNELWISE_METHODS:
        return "channelwise"
    is_add = (node.op == "call_function" and node.target in ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in ADD_METHODS
    )
    if is_add and _is_tensor_add(node, traced):
        return "add"
    is_flatten = (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target in FLATTEN_METHODS
    )
    if is_flatten and _is_flatten(node, traced):
        return "flatten"
    if node.op == "call_method" and node.target == "size" and _asks_batch_size(node):
        return "batch_size"
    return "other"


def _rank(node: object, traced: Traced) -> int | None:
    shape = traced.shapes.get(node) if isinstance(node, fx.Node) else None
    return None if shape is None else len(shape)


def _returns_indices(node: fx.Node) -> bool:
    return bool(node.kwargs.get("return_indices", False))


def _is_tensor_add(node: fx.Node, traced: Traced) -> bool:
    if len(node.args) != 2 or set(node.kwargs) - {"out"} or node.kwargs.get("out") is not None:
        return False
    a, b = node.args
    if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
        return False
    shape = traced.shapes.get(node)
    return shape is not None and len(shape) >= 2 and traced.shapes.get(a) == shape == traced.shapes.get(b)


def _is_flatten(node: fx.Node, traced: Traced) -> bool:
    """(N, C, H, W) -> (N, C*H*W), whatever op spells it."""
    source = node.args[0] if node.args else None
    if not isinstance(source, fx.Node):
        return False
    before, after = traced.shapes.get(source), traced.shapes.get(node)
    return (
        before is not None
        and after is not None
        and len(before) == 4
        and len(after) == 2
        and after[0] == before[0]
        and after[1] == math.prod(before[1:])
    )


def _asks_batch_size(node: fx.Node) -> bool:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return dim == 0


def flatten_area(node: fx.Node, traced: Traced) -> int:
    """H*W of the map a ``flatten`` node flattens."""
    shape = traced.shapes[node.args[0]]  # type: ignore[index]
    return math.prod(shape[2:])  # type: ignore[index]
