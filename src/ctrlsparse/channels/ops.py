"""The op table: what each node of a traced model does with the channels of its tensors.

Every tensor a node outputs is *tracked* when its channel dimension is known (``Op.dim``: 1 for NCHW maps and
(N, F) features, the last for a Linear on (N, ..., F)); each op kind has one rule in the analysis
(:mod:`~ctrlsparse.channels.flow`: which channels may be non-zero, which are read), in the coupling
(:mod:`~ctrlsparse.channels.coupling`: which channels must go together) and in the purge's rebuild. Kinds:

- ``input`` / ``output``: the model's input (never shrunk) and output (read whole).
- ``weight``: Conv (any ``groups``) / Linear, gated or not: input columns x output rows.
- ``norm``: BatchNorm (per-channel parameters; its shift makes zeros non-zero); ``masked_bn``: the paper archs'
  ``L0BatchNorm2d``; ``layer_norm``: a LayerNorm over the channels (its statistics mix them: read whole unless
  masked); ``masked_ln``: :class:`~ctrlsparse.group_gates.MaskedLayerNorm` (statistics over open channels).
- ``gates``: a :class:`~ctrlsparse.group_gates.GateGroup` call (its gate vector); ``gate``: a
  :class:`~ctrlsparse.group_gates.GatePoint` (x times each channel's gate).
- ``map``: one channel in, the same channel out (activations, pooling, dropout, reductions over other dims);
  ``zero_preserving`` when 0 stays 0 (ReLU, pooling ...; not sigmoid).
- ``sum`` / ``product``: elementwise over broadcast operands (residual adds; squeeze-excitation and layer-scale
  multiplies); ``operands`` are the tracked ones of full width, ``factors`` those that zero a product.
  A concatenation along another dim than its operands' channels (ViT's class token before the patch tokens) is
  a ``sum`` for the analysis: each output channel is that channel of every operand.
- ``move``: pure data movement (flatten, cat, chunk / split and getitem, view / transpose chains such as a
  channel shuffle, permute): each output channel is one channel of its ``sources`` (``index`` into their
  concatenation), found by running the op on channel ids (:mod:`~ctrlsparse.channels.graph`). A move whose
  output spreads channels over several dims (a shuffle's 5-D view) is ``composite``: only the move that ends the
  chain is tracked.
- ``attention``: :class:`~ctrlsparse.channels.heads.Attention` on channels-last q, k, v (what
  :mod:`~ctrlsparse.channels.attention` rewrites attention into): output channel c is value channel c weighted
  by its head's attention (0 stays 0), and a head's query, key, value and output channels go together.
- ``batch_size`` / ``query``: ``x.size(0)`` / other shape queries (they read no channel values).
- ``other``: anything else; it reads its inputs whole (zero-filled where channels were removed), always exact.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ctrlsparse.channels.heads import Attention
from ctrlsparse.group_gates import GatePoint, MaskedLayerNorm
from ctrlsparse.layers import Gates, L0BatchNorm2d

ZERO_PRESERVING_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Tanh,
    nn.Softsign,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.Upsample,
)
NONZERO_MODULES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softplus)
ZERO_PRESERVING_FUNCTIONS = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardtanh,
    torch.relu,
    torch.relu_,
    torch.tanh,
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.dropout,
    F.interpolate,
}
NONZERO_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.hardsigmoid, torch.exp, F.softplus}
ZERO_PRESERVING_METHODS = {"relu", "relu_", "tanh", "tanh_"}
NONZERO_METHODS = {"sigmoid", "sigmoid_", "exp"}
REDUCTIONS = {"mean", "sum", "amax", "amin"}  # over dims other than the channels: a channelwise map
SUM_FUNCTIONS = {operator.add, operator.iadd, torch.add, operator.sub, operator.isub, torch.sub}
SUM_METHODS = {"add", "add_", "sub", "sub_"}
PRODUCT_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
PRODUCT_METHODS = {"mul", "mul_"}
DIVIDE_FUNCTIONS = {operator.truediv, operator.itruediv, torch.div}
DIVIDE_METHODS = {"div", "div_"}
MOVE_FUNCTIONS = {
    torch.flatten,
    torch.cat,
    torch.concat,
    torch.chunk,
    torch.split,
    torch.transpose,
    torch.permute,
    torch.reshape,
    torch.narrow,
    torch.unsqueeze,
    torch.squeeze,
    torch.movedim,
    torch.swapaxes,
    torch.roll,
    operator.getitem,
}
MOVE_METHODS = {
    "view",
    "reshape",
    "flatten",
    "unflatten",
    "permute",
    "transpose",
    "contiguous",
    "chunk",
    "split",
    "unsqueeze",
    "squeeze",
    "narrow",
    "movedim",
    "swapaxes",
}
MOVE_MODULES = (nn.Flatten, nn.Unflatten)
# Moves that may be replayed on fewer channels (their arguments name dims, never sizes).
REPLAYABLE = {"flatten", "permute", "transpose", "contiguous", "unsqueeze", "squeeze", "movedim", "swapaxes", "roll"}
# Parameter-free modules from outside torch.nn that a dense trace keeps whole, known by class name.
NAMED_MODULES = {"StochasticDepth": "map", "Permute": "move"}
# Functions a trace keeps whole (torch.fx.wrap), by module and name: a gated model's trace meets StochasticDepth's
# (0 or 1 / (1 - p) per example: a channelwise map, zero-preserving, on channels last (Swin) and along dim 1
# (EfficientNet, ConvNeXt) alike; until issue 25 the latter was an unknown op, which left the purged EfficientNet
# an index_select before each residual add).
NAMED_FUNCTIONS = {("torchvision.ops.stochastic_depth", "stochastic_depth"): "map"}


def named_function(node: fx.Node) -> str | None:
    named = (getattr(node.target, "__module__", ""), getattr(node.target, "__name__", ""))
    return NAMED_FUNCTIONS.get(named) if node.op == "call_function" else None


@dataclass(frozen=True, eq=False)
class Op:
    """One node's rule (see the module docstring); ``dim`` and ``width`` describe its output's channels."""

    kind: str
    dim: int | None = None
    width: int = 0
    operands: tuple[fx.Node, ...] = ()  # tracked inputs read channel for channel
    module: nn.Module | None = None
    zero_preserving: bool = True  # map
    factors: tuple[fx.Node, ...] = ()  # product: the operands that zero it (a divisor does not)
    # sum / product: (argument position, dim) of untracked full-width operands; a position (0, i): item i of a
    # concatenation's list
    sliced: tuple[tuple[int | tuple[int, int], int], ...] = ()
    sources: tuple[fx.Node, ...] = ()  # move / composite: the tracked tensors its channels come from
    index: Tensor | None = None  # move: each output channel's position in the sources' concatenation
    name: str = ""  # move: the op's name (replayable or not); weight: "conv" / "linear"

    @property
    def tracked(self) -> bool:
        return self.dim is not None


def is_concat(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target in (torch.cat, torch.concat)


def target_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return type(modules[str(node.target)]).__name__
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def is_move(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function":
        return node.target in MOVE_FUNCTIONS
    if node.op == "call_method":
        return node.target in MOVE_METHODS
    if node.op == "call_module":
        module = modules[str(node.target)]
        return isinstance(module, MOVE_MODULES) or NAMED_MODULES.get(type(module).__name__) == "move"
    return False


def move_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The replay name of a move: ``permute`` for torchvision's Permute module, ``flatten`` for nn.Flatten."""
    name = target_name(node, modules).lower()
    return {"permute": "permute", "flatten": "flatten", "concat": "cat"}.get(name, name)


def map_kind(node: fx.Node, modules: dict[str, nn.Module]) -> bool | None:
    """True: a zero-preserving channelwise map; False: a channelwise map that makes zeros non-zero; None: no map."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        if isinstance(module, ZERO_PRESERVING_MODULES) or NAMED_MODULES.get(type(module).__name__) == "map":
            return not getattr(module, "return_indices", False)
        return False if isinstance(module, NONZERO_MODULES) else None
    if node.op == "call_function":
        if node.target in ZERO_PRESERVING_FUNCTIONS:
            return not node.kwargs.get("return_indices", False)
        if node.target is F.pad:  # zeros around other dims than the channels (a channel-padding pad is no map)
            given = dict(zip(("input", "pad", "mode", "value"), node.args, strict=False)) | dict(node.kwargs)
            return given.get("mode", "constant") == "constant" and not given.get("value")
        if named_function(node) == "map":
            return True
        return False if node.target in NONZERO_FUNCTIONS else None
    if node.op == "call_method":
        if node.target in ZERO_PRESERVING_METHODS:
            return True
        return False if node.target in NONZERO_METHODS else None
    return None


def elementwise_kind(node: fx.Node) -> str | None:
    """``sum``, ``product`` or ``divide`` for a binary elementwise op without extra keywords."""
    if node.kwargs or len(node.args) != 2:
        return None
    if node.op == "call_function":
        table = ((SUM_FUNCTIONS, "sum"), (PRODUCT_FUNCTIONS, "product"), (DIVIDE_FUNCTIONS, "divide"))
        return next((kind for names, kind in table if node.target in names), None)
    if node.op == "call_method":
        table = ((SUM_METHODS, "sum"), (PRODUCT_METHODS, "product"), (DIVIDE_METHODS, "divide"))
        return next((kind for names, kind in table if node.target in names), None)
    return None


def reduced_dims(node: fx.Node, rank: int) -> tuple[list[int], bool] | None:
    """(dims reduced, keepdim) of a mean / sum / amax call, or None when it is not one."""
    if (
        node.op == "call_method"
        and node.target in REDUCTIONS
        or node.op == "call_function"
        and getattr(node.target, "__name__", "") in REDUCTIONS
        and node.target
        in (
            torch.mean,
            torch.sum,
            torch.amax,
            torch.amin,
        )
    ):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    else:
        return None
    if dims is None:
        return None
    dims = [dims] if isinstance(dims, int) else list(dims)
    keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
    return [d % rank for d in dims], keepdim


def module_kind(module: nn.Module) -> str | None:
    """The kind a module call has by its type alone (weight, norm, gates, ...)."""
    if isinstance(module, Gates) and not isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
        return "gates"
    if isinstance(module, GatePoint):
        return "gate"
    if isinstance(module, MaskedLayerNorm):
        return "masked_ln"
    if isinstance(module, Attention):
        return "attention"
    if isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "weight"
    if isinstance(module, nn.Linear):
        return "weight"
    if isinstance(module, L0BatchNorm2d):
        return "masked_bn"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "norm"
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return "layer_norm"
    return None
