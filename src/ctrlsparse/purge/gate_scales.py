"""Fractional eval gates folded into the layers that read them.

A gate whose median lies between 0 and 1 scales its channel in the eval model, and the purge emits that as one
``mul`` by a per-channel constant in front of the readers (:mod:`~ctrlsparse.purge.build`). Every reader of a
gated tensor mixes channels; where each is a Conv or Linear taking it as its input, the scale is exactly a scale
of that layer's input columns, ``layer(x * s) = layer'(x)`` with ``layer'``'s weight multiplied by ``s`` along its
input channels (a padded conv pads ``x * s`` with ``s`` times what it pads ``x`` with: zeros, or copies of
``x``'s own values), so the ``mul``, an elementwise pass over the whole activation, goes. A trained run keeps many
such gates: a digits mobilenet_v2 under a latency budget ended with 46 ``mul`` passes in its purged graph, all
folded (README, "What it buys in time").
"""

from __future__ import annotations

import copy
import operator
from collections import Counter

import torch
from torch import Tensor, fx, nn

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def foldable_scales(module: fx.GraphModule) -> list[tuple[fx.Node, Tensor]]:
    """The ``mul`` nodes by a per-channel constant whose readers are all Conv / Linear layers (each called once,
    each reading it as its input), with their values (each reader reads one input, so the folds are independent)."""
    modules = dict(module.named_modules())
    calls = Counter(str(node.target) for node in module.graph.nodes if node.op == "call_module")
    found = []
    for node in module.graph.nodes:
        scale = _channel_scale(module, node)
        if scale is not None and node.users and all(_folds_into(r, node, modules, calls, *scale) for r in node.users):
            found.append((node, scale[1]))
    return found


def fold_gate_scales(module: fx.GraphModule) -> int:
    """Fold every :func:`foldable_scales` ``mul`` into the weights of its readers, in place; returns how many
    ``mul`` nodes went."""
    found = foldable_scales(module)
    for node, values in found:
        for reader in list(node.users):
            layer = copy.deepcopy(module.get_submodule(str(reader.target)))
            with torch.no_grad():
                layer.weight.copy_(_scaled_weight(layer, values.to(layer.weight)))
            module.set_submodule(str(reader.target), layer)
            reader.replace_input_with(node, node.args[0])
        module.graph.erase_node(node)
    if found:
        module.graph.eliminate_dead_code()
        module.delete_all_unused_submodules()
        module.recompile()
    return len(found)


def _channel_scale(module: fx.GraphModule, node: fx.Node) -> tuple[int | None, Tensor] | None:
    """(dim, values) when ``node`` is ``x * c`` with ``c`` a constant of one non-unit dim (dim None: of one
    value), else None."""
    if node.op != "call_function" or node.target not in (torch.mul, operator.mul) or len(node.args) != 2:
        return None
    x, constant = node.args
    if not isinstance(x, fx.Node) or not isinstance(constant, fx.Node) or constant.op != "get_attr":
        return None
    value = fx.Interpreter(module).fetch_attr(str(constant.target))
    if not isinstance(value, Tensor) or not value.is_floating_point() or value.dim() < 2:
        return None
    sized = [d for d, size in enumerate(value.shape) if size != 1]
    if len(sized) > 1:
        return None
    if not sized:  # one value (a tensor left with one channel): a scale of every input channel alike
        return None, value.detach().flatten()
    return sized[0] - value.dim(), value.detach().flatten()  # dim counted from the end


def _folds_into(reader: fx.Node, node: fx.Node, modules, calls, dim: int | None, values: Tensor) -> bool:
    layer = modules.get(str(reader.target)) if reader.op == "call_module" else None
    if type(layer) not in WEIGHT_LAYERS or calls.get(str(reader.target)) != 1:
        return False
    if reader.args[:1] != (node,) or node in reader.args[1:] or node in reader.kwargs.values():
        return False
    if dim is None:
        return True
    if isinstance(layer, nn.Linear):
        return dim == -1 and len(values) == layer.in_features
    return dim == -(layer.weight.dim() - 1) and len(values) == layer.in_channels  # (N, C, *spatial)


def _scaled_weight(layer: nn.Module, values: Tensor) -> Tensor:
    """``layer``'s weight with each input channel's columns multiplied by its value (one value: all alike)."""
    weight = layer.weight.detach()
    if len(values) == 1:
        return weight * values
    if isinstance(layer, nn.Linear):
        return weight * values.view(1, -1)
    groups, spatial = layer.groups, weight.shape[2:]
    out, per = weight.shape[0] // groups, weight.shape[1]
    grouped = weight.reshape(groups, out, per, *spatial)
    scale = values.view(groups, 1, per, *([1] * len(spatial)))
    return (grouped * scale).reshape(weight.shape)
