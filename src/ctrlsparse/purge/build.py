"""Emit the purged graph: plain, smaller Conv / Linear / BatchNorm / LayerNorm modules and a few index ops.

Every tracked tensor of the purged graph holds a subset of its channels (its *layout*: indices into the full
width, in order), at least those :class:`~ctrlsparse.channels.flow.Flow` keeps. Where a consumer wants other
channels than its producer holds (a residual add after a block whose last conv lost channels, a gated Linear
reading a subset of the input pixels, an op the purge does not know), the tensor is re-indexed with
``index_select`` over its channel dim; channels the producer does not hold are filled with zeros (a zero slice is
concatenated first), except in a residual add, where such an operand is added into the other with one
``index_add`` (:mod:`~ctrlsparse.purge.residual`). Attention is emitted as torch ops over its kept heads (split, scaled_dot_product_attention,
merge). Gate points become nothing (open gates) or one multiply by their fractional eval gates.
The graph uses only torch operations, so it exports and loads without ctrlsparse.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ctrlsparse.channels.flow import Flow
from ctrlsparse.channels.operands import argument_at, constant_source
from ctrlsparse.channels.ops import REPLAYABLE
from ctrlsparse.group_gates import channel_gates
from ctrlsparse.layers import GatedLayer
from ctrlsparse.purge.layers import plain, sliced_batchnorm, sliced_grouped, sliced_layer, sliced_layer_norm
from ctrlsparse.purge.residual import index_add_sum


def indices(mask: Tensor) -> Tensor:
    """Indices of a boolean channel mask, never empty (an all-closed tensor keeps one all-zero channel)."""
    found = mask.nonzero().flatten()
    return found if len(found) else torch.zeros(1, dtype=torch.long)


class Builder:
    def __init__(self, flow: Flow):
        self.flow, self.graph = flow, flow.graph
        self.new = fx.Graph()
        self.attributes: dict[str, Any] = {}
        self.values: dict[fx.Node, Any] = {}  # old node -> new node (None: a gate group, folded away)
        self.layouts: dict[fx.Node, Tensor] = {}  # old node -> full-width indices its new tensor holds
        self._constants = 0

    # --- attributes of the purged module ---
    def attribute(self, name: str, value: Any) -> str:
        unique, suffix = name.replace(".", "_"), 1
        while unique in self.attributes and self.attributes[unique] is not value:
            unique, suffix = f"{name.replace('.', '_')}_{suffix}", suffix + 1
        self.attributes[unique] = value
        return unique

    def tensor(self, name: str, value: Tensor) -> fx.Node:
        self._constants += 1
        return self.new.get_attr(self.attribute(f"purge_{name}_{self._constants}", value))

    # --- re-indexing ---
    def full(self, node: fx.Node) -> Tensor:
        return torch.arange(self.graph.ops[node].width)

    def kept(self, node: fx.Node) -> Tensor:
        return indices(self.flow.kept(node))

    def adapt(self, node: fx.Node, wanted: Tensor) -> fx.Node:
        """The new tensor of ``node`` re-indexed to hold the channels ``wanted`` (zeros where it has none)."""
        value, held, op = self.values[node], self.layouts[node], self.graph.ops[node]
        if torch.equal(held, wanted):
            return value
        position = torch.full((op.width,), len(held), dtype=torch.long)
        position[held] = torch.arange(len(held))
        index = position[wanted]
        if bool((index < len(held)).all()):
            return self.new.call_function(torch.index_select, (value, op.dim, self.tensor("index", index)))
        zero = self.new.call_function(torch.zeros_like, (self.new.call_method("narrow", (value, op.dim, 0, 1)),))
        padded = self.new.call_function(torch.cat, ([value, zero], op.dim))
        return self.new.call_function(torch.index_select, (padded, op.dim, self.tensor("index", index)))

    def whole(self, node: fx.Node) -> Any:
        """A node's new value at full width (tracked tensors zero-filled where channels were removed)."""
        return self.adapt(node, self.full(node)) if node in self.layouts else self.values[node]

    def mapped(self, argument: Any, wanted: dict[fx.Node, Tensor] | None = None) -> Any:
        """Arguments in the new graph: tensors in ``wanted`` re-indexed to those channels, the rest whole."""
        wanted = wanted or {}
        return fx.node.map_arg(argument, lambda n: self.adapt(n, wanted[n]) if n in wanted else self.whole(n))

    def replay(self, node: fx.Node, args: Any, kwargs: Any, module: nn.Module | None = None) -> fx.Node:
        if node.op == "call_module":
            target = self.attribute(str(node.target), module if module is not None else self.graph.module_of(node))
            return self.new.call_module(target, args, kwargs)
        return self.new.create_node(node.op, node.target, args, kwargs)

    # --- one node at a time ---
    def emit(self, node: fx.Node) -> None:
        op = self.graph.ops[node]
        kind = op.kind
        if node.op == "placeholder":
            self.values[node] = self.new.placeholder(str(node.target))
        elif node.op == "get_attr":
            self.values[node] = self.new.get_attr(self.attribute(str(node.target), self.graph.constant(node)))
        elif node.op == "output":
            self.new.output(self.mapped(node.args[0]))
            return
        elif kind == "gates":
            self.values[node] = None  # its eval gates are folded into the gate points
            return
        elif kind == "gate":
            self._gate(node)
        elif kind == "masked_ln":
            self._masked_layer_norm(node)
        elif kind == "weight":
            self._weight(node)
        elif kind in ("norm", "masked_bn", "map", "sum", "product"):
            self._channelwise(node)
        elif kind == "move":
            self._move(node)
        elif kind == "attention":
            self._attention(node)
        elif kind == "batch_size":
            self.values[node] = self.replay(node, self.mapped(node.args, {}), self.mapped(node.kwargs, {}))
            self.values[node].args = (self.values[node.args[0]], *self.values[node].args[1:])
        else:  # query, composite, plain LayerNorm and anything unknown: every tensor input at full width
            module = plain(self.graph.module_of(node)) if node.op == "call_module" else None
            self.values[node] = self.replay(node, self.mapped(node.args), self.mapped(node.kwargs), module)
        if op.tracked and node not in self.layouts:
            self.layouts[node] = self.full(node)

    def _gate(self, node: fx.Node) -> None:
        keep = self.kept(node)
        value = self.adapt(node.args[0], keep)
        module = self.graph.module_of(node)
        zs = tuple(self.graph.module_of(group).gates().detach().cpu() for group in node.args[1:])
        scale = channel_gates(None if module.index is None else module.index.cpu(), zs)[keep]
        if not bool((scale == 1).all()):
            shape = [1] * len(self.graph.shapes[node])
            shape[self.graph.ops[node].dim] = -1
            value = self.new.call_function(torch.mul, (value, self.tensor("scale", scale.view(shape))))
        self.values[node], self.layouts[node] = value, keep

    def _masked_layer_norm(self, node: fx.Node) -> None:
        keep = indices(self.flow.mask(node))
        x, weight, bias = node.args[:3]
        constants = [None if n is None else self.graph.constant(n) for n in (weight, bias)]
        layer = sliced_layer_norm(len(keep), self.graph.module_of(node).eps, *constants, keep)
        owner = next((str(n.target).rpartition(".")[0] for n in (weight, bias) if n is not None), "")
        target = self.attribute(owner or str(node.target), layer)  # the LayerNorm's own name where it had one
        self.values[node] = self.new.call_module(target, (self.adapt(x, keep),))
        self.layouts[node] = keep

    def _weight(self, node: fx.Node) -> None:
        op, flow = self.graph.ops[node], self.flow
        layer, source = op.module, op.operands[0]
        weight, bias = layer.eval_params() if isinstance(layer, GatedLayer) else (layer.weight, layer.bias)
        weight, bias = weight.detach(), None if bias is None else bias.detach()
        reads = flow.reads_channels(node)
        if op.name == "conv" and layer.groups > 1:
            groups = indices(flow.kept_groups(node)) if reads else torch.arange(layer.groups)
            rows = torch.cat(
                [torch.arange(g * op.width // layer.groups, (g + 1) * op.width // layer.groups) for g in groups]
            )
            per = layer.in_channels // layer.groups
            columns = torch.cat([torch.arange(g * per, (g + 1) * per) for g in groups])
            new = sliced_grouped(layer, weight, bias, rows, len(groups))
        else:
            rows, columns = self.kept(node), indices(flow.columns(node))
            new = sliced_layer(layer, weight, bias, rows, columns)
        value = self.adapt(source, columns) if reads else self.whole(source)  # zeros where channels went
        self.values[node] = self.new.call_module(self.attribute(str(node.target), new), (value,))
        self.layouts[node] = rows

    def _channelwise(self, node: fx.Node) -> None:
        """Norms, maps, sums and products: every tracked operand at the kept channels, full-width constants
        sliced to them."""
        op = self.graph.ops[node]
        keep = self.kept(node)
        added = index_add_sum(self, node, keep) if op.kind == "sum" else None
        if added is not None:
            self.values[node], self.layouts[node] = added, keep
            return
        args = [
            list(a) if isinstance(a, list | tuple) else a
            for a in self.mapped(node.args, dict.fromkeys(op.operands, keep))
        ]
        for position, dim in op.sliced:
            value = self._slice(argument_at(node.args, position), dim, keep)
            if isinstance(position, tuple):
                args[position[0]][position[1]] = value
            else:
                args[position] = value
        module = None
        if op.kind in ("norm", "masked_bn"):
            given = self.graph.constant(node.args[1]).detach().cpu() if op.kind == "masked_bn" else None
            scale = given if given is not None and given.is_floating_point() else None  # gate_after_norm's gates
            mask = None if given is None else given != 0 if scale is not None else given.bool()
            module, args = sliced_batchnorm(op.module, keep, mask, scale), args[:1]
        elif node.op == "call_module":
            module = op.module if op.module is not None else self.graph.module_of(node)
        self.values[node] = self.replay(node, tuple(args), self.mapped(node.kwargs), module)
        self.layouts[node] = keep

    def _attention(self, node: fx.Node) -> None:
        """Attention over the kept heads: q, k, v re-indexed to those heads' channels, split, attended, merged."""
        op, new = self.graph.ops[node], self.new
        layer = op.module
        heads = indices(self.flow.kept_heads(node))

        def channels(source: fx.Node) -> Tensor:
            per = self.graph.ops[source].width // layer.heads
            return (heads.view(-1, 1) * per + torch.arange(per)).flatten()

        parts = []
        for source in op.operands:
            value = self.adapt(source, channels(source))
            parts.append(
                new.call_method("transpose", (new.call_method("unflatten", (value, -1, (len(heads), -1))), -3, -2))
            )
        kwargs = {"is_causal": layer.causal, "scale": layer.scale}
        if len(node.args) > 3:  # a score bias or mask: its slices of the kept heads (dim -3), if it has one a head
            bias, shape = self.whole(node.args[3]), self.graph.shapes[node.args[3]]
            if len(shape) >= 3 and shape[-3] == layer.heads > 1:
                bias = new.call_function(torch.index_select, (bias, -3, self.tensor("index", heads)))
            kwargs["attn_mask"] = bias
        out = new.call_function(F.scaled_dot_product_attention, tuple(parts), kwargs)
        self.values[node] = new.call_method("flatten", (new.call_method("transpose", (out, -3, -2)), -2))
        self.layouts[node] = channels(node)

    def _slice(self, argument: fx.Node, dim: int, keep: Tensor) -> fx.Node:
        source = constant_source(argument, self.graph.shapes)
        if source is not None:  # a parameter (or one expanded at the same rank): sliced itself
            constant = self.graph.constant(source)
            sliced = constant.detach().index_select(dim, keep.to(constant.device))
            if isinstance(constant, nn.Parameter):
                sliced = nn.Parameter(sliced.clone(), requires_grad=False)
            value = self.new.get_attr(self.attribute(str(source.target), sliced))
            if source is argument:
                return value
            sizes = list(self.mapped(argument.args[1:]))
            sizes[dim] = len(keep) if isinstance(sizes[dim], int) and sizes[dim] >= 0 else sizes[dim]
            return self.new.call_method("expand", (value, *sizes))
        return self.new.call_function(torch.index_select, (self.whole(argument), dim, self.tensor("index", keep)))

    def _move(self, node: fx.Node) -> None:
        op = self.graph.ops[node]
        keep = self.kept(node)
        reads = op.index[keep]
        if op.name in REPLAYABLE and len(op.sources) == 1:
            (source,) = op.sources
            needed = reads.unique()
            value = self.adapt(source, needed)
            if op.name == "flatten" and node.target in ("view", "reshape"):  # a view that flattens
                node_value = self.new.call_function(torch.flatten, (value, self.graph.ops[source].dim))
            elif op.name == "flatten" and node.op == "call_module":  # nn.Flatten as the torch function
                layer = self.graph.module_of(node)
                node_value = self.new.call_function(torch.flatten, (value, layer.start_dim, layer.end_dim))
            else:
                node_value = self.replay(node, (value, *self.mapped(node.args[1:])), self.mapped(node.kwargs))
            self.values[node] = node_value
            self.layouts[node] = torch.isin(op.index, needed).nonzero().flatten()
        elif self._gatherable(node):
            starts, held, start = {}, [], 0
            for source in op.sources:
                starts[source] = start
                start += self.graph.ops[source].width
            parts = []
            for source in op.sources:
                mine = reads[(reads >= starts[source]) & (reads < starts[source] + self.graph.ops[source].width)]
                wanted = (mine - starts[source]).unique()
                if len(wanted):
                    parts.append(self.adapt(source, wanted))
                    held.append(wanted + starts[source])
            joined = torch.cat(held)
            value = parts[0] if len(parts) == 1 else self.new.call_function(torch.cat, (parts, op.dim))
            position = torch.searchsorted(joined, reads) if bool((joined[1:] > joined[:-1]).all()) else None
            if position is None or not torch.equal(joined[position], reads):
                lookup = {int(v): i for i, v in enumerate(joined.tolist())}
                position = torch.tensor([lookup[int(v)] for v in reads.tolist()])
            if not torch.equal(position, torch.arange(len(joined))):
                value = self.new.call_function(torch.index_select, (value, op.dim, self.tensor("index", position)))
            self.values[node], self.layouts[node] = value, keep
        else:
            self.values[node] = self.replay(node, self.mapped(node.args), self.mapped(node.kwargs))

    def _gatherable(self, node: fx.Node) -> bool:
        """Whether every source has the output's rank, channel dim and other sizes (then: cat, index_select)."""
        op, shape = self.graph.ops[node], self.graph.shapes[node]
        for source in op.sources:
            other = self.graph.shapes[source]
            if len(other) != len(shape) or self.graph.ops[source].dim != op.dim:
                return False
            if any(a != b for d, (a, b) in enumerate(zip(other, shape, strict=True)) if d not in (0, op.dim)):
                return False
        return True
