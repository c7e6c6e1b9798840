"""Emit the purged graph: plain, smaller Conv2d / Linear / BatchNorm2d modules and a few index ops.

Every tensor of the purged graph holds the channels :class:`~ctrlsparse.purge.plan.Plan` keeps for it, in
order. Where a consumer wants other channels than its producer holds (a residual add after a block whose last
conv lost channels, a gated Linear reading a subset of the input pixels, an op the purge does not know), the
tensor is re-indexed with ``index_select`` over dim 1; channels the producer does not hold are filled with zeros
(a zero column is concatenated first). The graph uses only torch operations, so it exports and loads without
ctrlsparse.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, fx, nn

from ctrlsparse.layers import GatedLayer
from ctrlsparse.purge.plan import Plan, tensor_inputs


class Builder:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.graph = fx.Graph()
        self.attributes: dict[str, Any] = {}
        self.values: dict[fx.Node, fx.Node] = {}  # old node -> new node
        self.layouts: dict[fx.Node, Tensor] = {}  # old node -> full-width indices its new tensor holds
        self._constants = 0

    # --- attributes of the purged module ---
    def _attribute(self, name: str, value: Any) -> str:
        unique, suffix = name, 1
        while unique in self.attributes and self.attributes[unique] is not value:
            unique, suffix = f"{name}_{suffix}", suffix + 1
        self.attributes[unique] = value
        return unique

    def _index(self, values: Tensor) -> fx.Node:
        self._constants += 1
        return self.graph.get_attr(self._attribute(f"purge_index_{self._constants}", values.clone()))

    # --- re-indexing ---
    def full(self, node: fx.Node) -> Tensor:
        return torch.arange(self.plan.traced.channels(node))

    def adapt(self, node: fx.Node, wanted: Tensor) -> fx.Node:
        """The new tensor of ``node`` re-indexed to hold the channels ``wanted`` (zeros where it has none)."""
        value, held = self.values[node], self.layouts[node]
        if torch.equal(held, wanted):
            return value
        position = torch.full((self.plan.traced.channels(node),), len(held), dtype=torch.long)
        position[held] = torch.arange(len(held))
        index = position[wanted]
        if bool((index < len(held)).all()):
            return self.graph.call_function(torch.index_select, (value, 1, self._index(index)))
        zero = self.graph.call_function(torch.zeros_like, (self.graph.call_method("narrow", (value, 1, 0, 1)),))
        padded = self.graph.call_function(torch.cat, ([value, zero], 1))
        return self.graph.call_function(torch.index_select, (padded, 1, self._index(index)))

    def mapped(self, argument: Any, wanted: dict[fx.Node, Tensor] | None = None) -> Any:
        """Arguments in the new graph; tensors listed in ``wanted`` re-indexed to those channels."""
        wanted = wanted or {}
        return fx.node.map_arg(
            argument, lambda node: self.adapt(node, wanted[node]) if node in wanted else self.values[node]
        )

    # --- one node at a time ---
    def emit(self, node: fx.Node) -> None:
        plan, kind = self.plan, self.plan.kinds[node]
        if kind == "placeholder":
            self.values[node] = self.graph.placeholder(str(node.target))
        elif kind == "get_attr":
            value = plan.traced.constant(node)
            self.values[node] = self.graph.get_attr(self._attribute(str(node.target).replace(".", "_"), value))
        elif kind == "output":
            wanted = {source: self.full(source) for source in tensor_inputs(node, plan.traced)}
            self.graph.output(self.mapped(node.args[0], wanted))
            return
        elif kind == "weight":
            self._weight(node)
        elif kind in ("batchnorm", "channelwise", "depthwise", "add"):
            self._channelwise(node, kind)
        elif kind == "flatten":
            source = node.args[0]
            self.values[node] = self.graph.call_function(torch.flatten, (self.values[source], 1))
            area = self.plan.traced.channels(node) // self.plan.traced.channels(source)
            held = self.layouts[source]
            self.layouts[node] = (held.view(-1, 1) * area + torch.arange(area)).flatten()
        else:  # batch_size and anything unknown: every tensor input at full width
            wanted = {source: self.full(source) for source in tensor_inputs(node, plan.traced)}
            if kind == "batch_size":
                wanted = {}
            args, kwargs = self.mapped(node.args, wanted), self.mapped(node.kwargs, wanted)
            if node.op == "call_module":
                target = self._attribute(str(node.target), plain(plan.module(node)))
                self.values[node] = self.graph.call_module(target, args, kwargs)
            else:
                self.values[node] = self.graph.create_node(node.op, node.target, args, kwargs)
        if plan.traced.channels(node) is not None and node not in self.layouts:
            self.layouts[node] = self.full(node)

    def _weight(self, node: fx.Node) -> None:
        plan, source = self.plan, node.args[0]
        layer = plan.module(node)
        columns = self.layouts[source]
        needs = plan.input_needs(node)
        if needs is not None and not bool(needs[columns].all()):
            read = columns[needs[columns]]
            columns = read if len(read) else columns[:1]
        grouped = isinstance(layer, nn.Conv2d) and layer.groups != 1
        if grouped:  # channel i of the output reads group i // ...: keep a grouped conv whole
            columns = self.full(source)
        rows = self.full(node) if grouped else plan.kept(node)
        weight, bias = layer.eval_params() if isinstance(layer, GatedLayer) else (layer.weight, layer.bias)
        new = sliced_layer(layer, weight.detach(), None if bias is None else bias.detach(), rows, columns)
        target = self._attribute(str(node.target), new)
        self.values[node] = self.graph.call_module(target, (self.adapt(source, columns),))
        self.layouts[node] = rows

    def _channelwise(self, node: fx.Node, kind: str) -> None:
        plan = self.plan
        keep = plan.kept(node)
        sources = node.args[:2] if kind == "add" else node.args[:1]
        inputs = [self.adapt(source, keep) for source in sources]
        rest = self.mapped(node.args[len(sources) :])
        if kind in ("batchnorm", "depthwise"):
            module = plan.module(node)
            module = (
                sliced_batchnorm(module, keep, plan.bn_mask(node))
                if kind == "batchnorm"
                else sliced_depthwise(module, keep)
            )
            self.values[node] = self.graph.call_module(self._attribute(str(node.target), module), (inputs[0],))
        elif node.op == "call_module":
            target = self._attribute(str(node.target), plan.module(node))
            self.values[node] = self.graph.call_module(target, (*inputs, *rest), self.mapped(node.kwargs))
        else:
            args = (*inputs, *rest)
            self.values[node] = self.graph.create_node(node.op, node.target, args, self.mapped(node.kwargs))
        self.layouts[node] = keep


def plain(module: nn.Module) -> nn.Module:
    """A gated layer as the plain layer of its eval weights, whole; any other module as it is."""
    if not isinstance(module, GatedLayer):
        return module
    weight, bias = module.eval_params()
    return sliced_layer(module, weight, bias, torch.arange(weight.shape[0]), torch.arange(weight.shape[1]))


def sliced_layer(layer: nn.Module, weight: Tensor, bias: Tensor | None, rows: Tensor, columns: Tensor) -> nn.Module:
    """A plain Conv2d / Linear holding ``weight[rows][:, columns]`` (and ``bias[rows]``); grouped convs stay whole."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            rows, columns = torch.arange(weight.shape[0]), torch.arange(weight.shape[1])
        new: nn.Module = nn.Conv2d(
            len(columns) * layer.groups,
            len(rows),
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            bias is not None,
            layer.padding_mode,
        )
    else:
        new = nn.Linear(len(columns), len(rows), bias=bias is not None)
    new = new.to(device=weight.device, dtype=weight.dtype)
    rows, columns = rows.to(weight.device), columns.to(weight.device)
    with torch.no_grad():
        new.weight.copy_(weight[rows][:, columns])
        if bias is not None:
            new.bias.copy_(bias[rows])
    return new


def sliced_depthwise(conv: nn.Conv2d, keep: Tensor) -> nn.Conv2d:
    """A depthwise Conv2d over the kept channels (one filter per channel)."""
    k = len(keep)
    new = nn.Conv2d(k, k, conv.kernel_size, conv.stride, conv.padding, conv.dilation, k, conv.bias is not None)
    new.padding_mode = conv.padding_mode
    new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
    index = keep.to(conv.weight.device)
    with torch.no_grad():
        new.weight.copy_(conv.weight[index])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[index])
    return new


def sliced_batchnorm(bn: nn.BatchNorm2d, keep: Tensor, mask: Tensor | None) -> nn.BatchNorm2d:
    """A plain BatchNorm2d over the kept channels. Channels an ``L0BatchNorm2d`` passes through unchanged (mask
    false) get the identity: mean 0, variance 1 - eps, scale 1, shift 0."""
    new = nn.BatchNorm2d(len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    new = new.to(device=bn.weight.device if bn.affine else None)
    index = keep.to(new.running_mean.device) if new.running_mean is not None else keep
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[index])
            new.bias.copy_(bn.bias[index])
        if bn.running_mean is not None:
            new.running_mean.copy_(bn.running_mean[index])
            new.running_var.copy_(bn.running_var[index])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
        if mask is not None:
            identity = ~mask[keep].to(index.device)
            if new.running_mean is not None:
                new.running_mean[identity] = 0.0
                new.running_var[identity] = 1.0 - bn.eps
            if bn.affine:
                new.weight[identity] = 1.0
                new.bias[identity] = 0.0
    return new
