"""Which channels of every tensor may be non-zero, which are read, and which the purged model keeps.

Two passes over a :class:`~ctrlsparse.channels.graph.ChannelGraph`, in one of the algebras of
:mod:`~ctrlsparse.channels.algebra` (booleans for the purge, probability expressions for the expected cost):

- forward, ``nonzero``: a gated conv's closed channels are zero (its bias goes with them), a gate point zeroes
  its closed channels, zero stays zero through zero-preserving maps and moves (and attention's values), a sum is non-zero where any
  operand is, a product where all its factors are; a norm's shift, a Linear's bias or an unknown op make
  channels non-zero.
- backward, ``needed``: a gated Linear reads the inputs whose gates are open, a gate point the channels it lets
  through, a masked LayerNorm its open channels, a grouped conv the input channels of the groups it keeps; maps,
  sums and moves pass their needs back (a product's operand only where the other factors are non-zero);
  attention reads the values its needed outputs weigh, and the whole query and key slices of every head with a
  needed, non-zero output channel; any other reader reads everything.

A tensor keeps ``nonzero & needed`` (``kept``): a channel left out is exactly zero or read by nobody, the only
rule the purge's rebuild relies on, and the expected cost counts the same expressions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, fx, nn

from ctrlsparse.channels.graph import ChannelGraph
from ctrlsparse.group_gates import GatePoint
from ctrlsparse.layers import Gates, L0Conv2d, L0Linear


def gate_offsets(units: list[Gates]) -> dict[int, int]:
    """id(gate set) -> the index of its first gate in the concatenation of ``units``' gates."""
    offsets, start = {}, 0
    for unit in units:
        offsets[id(unit)], start = start, start + unit.n_gates
    return offsets


class Flow:
    """``nonzero``, ``needed`` and :meth:`kept` of every tracked node, in ``algebra``; ``offsets`` from
    :func:`gate_offsets` over the model's gate sets (the order the algebra's gate ids follow)."""

    def __init__(self, graph: ChannelGraph, algebra: Any, offsets: dict[int, int]):
        self.graph, self.algebra, self.offsets = graph, algebra, offsets
        self.nonzero: dict[fx.Node, Any] = {}
        self.needed: dict[fx.Node, Any] = {}
        self._kept: dict[fx.Node, Any] = {}
        nodes = graph.nodes
        for node in nodes:
            if graph.ops[node].tracked:
                self.nonzero[node] = self._nonzero(node)
        self._reads: dict[fx.Node, list] = {node: [] for node in self.nonzero}
        for node in reversed(nodes):
            if node in self.nonzero:
                reads = self._reads.pop(node)
                width = graph.ops[node].width
                self.needed[node] = algebra.either(reads) if reads else algebra.const(width, False)
            self._read(node)

    # --- literals ---
    def unit_gates(self, unit: Gates) -> Any:
        start = self.offsets[id(unit)]
        return self.algebra.lit(torch.arange(start, start + unit.n_gates))

    def point_gates(self, node: fx.Node) -> Any:
        """The gate of each channel a GatePoint / MaskedLayerNorm acts on (1 where no group gates it)."""
        module = self.graph.module_of(node)
        groups = node.args[1:] if isinstance(module, GatePoint) else node.args[3:]
        ids = [self._ids_of(self.graph.module_of(group)) for group in groups]
        if module.index is None:
            return self.algebra.lit(ids[0])
        return self.algebra.lit(torch.cat([*ids, torch.tensor([self.algebra.one])])[module.index.cpu()])

    def _ids_of(self, unit: Gates) -> Tensor:
        start = self.offsets[id(unit)]
        return torch.arange(start, start + unit.n_gates)

    def mask(self, node: fx.Node) -> Any:
        """The channels a masked LayerNorm normalises over."""
        return self.point_gates(node)

    # --- forward ---
    def _nonzero(self, node: fx.Node) -> Any:
        op, algebra = self.graph.ops[node], self.algebra
        everything = algebra.const(op.width, True)
        source = op.operands[0] if op.operands else None
        if op.kind == "weight":
            module = op.module
            if isinstance(module, L0Conv2d) and module.structured:
                return self.unit_gates(module)
            if op.name == "conv" and module.groups > 1 and module.bias is None and self.reads_channels(node):
                groups = torch.arange(module.groups)
                per_group = algebra.spread(self.nonzero[source], self.in_groups(node), module.groups)
                return algebra.gather(per_group, groups.repeat_interleave(op.width // module.groups))
            return everything
        if op.kind in ("masked_bn", "map") and (op.kind == "masked_bn" or op.zero_preserving):
            return self.nonzero[source]
        if op.kind == "gate":
            return algebra.both([self.nonzero[source], self.point_gates(node)])
        if op.kind == "sum":
            constant = [everything] if len(node.args) > len(op.operands) or op.sliced else []
            return algebra.either([self.nonzero[o] for o in op.operands] + constant)
        if op.kind == "product" and op.factors:
            return algebra.both([self.nonzero[f] for f in op.factors])
        if op.kind == "move":
            return algebra.gather(algebra.cat([self.nonzero[s] for s in op.sources]), op.index)
        if op.kind == "attention":
            return self.nonzero[op.operands[2]]
        return everything

    def reads_channels(self, node: fx.Node) -> bool:
        """Whether a weight node's input is tracked along the dim it reduces (1 for a conv, last for a Linear)."""
        op = self.graph.ops[node]
        source_op = self.graph.ops[op.operands[0]]
        rank = len(self.graph.shapes[op.operands[0]])
        return source_op.tracked and source_op.dim == (1 if op.name == "conv" else rank - 1)

    def in_groups(self, node: fx.Node) -> Tensor:
        """The group of each input channel of a (grouped) conv."""
        module = self.graph.module_of(node)
        return torch.arange(module.groups).repeat_interleave(module.in_channels // module.groups)

    # --- backward ---
    def _read(self, node: fx.Node) -> None:
        op, algebra = self.graph.ops[node], self.algebra
        if op.kind in ("input", "constant", "gates", "batch_size", "query", "composite") or node.op == "get_attr":
            return
        if op.kind == "weight":
            source = op.operands[0]
            if not self.reads_channels(node):
                self._read_whole(source)
            elif isinstance(op.module, L0Linear) and op.module.structured:
                self._reads[source].append(self.unit_gates(op.module))
            elif op.name == "conv" and op.module.groups > 1:
                kept_groups = algebra.spread(self.kept(node), self.out_groups(node), op.module.groups)
                self._reads[source].append(algebra.gather(kept_groups, self.in_groups(node)))
            else:
                self._reads[source].append(algebra.const(self.graph.ops[source].width, True))
            return
        needed = self.needed.get(node)
        if op.kind in ("norm", "masked_bn", "map"):
            self._reads[op.operands[0]].append(needed)
        elif op.kind == "gate":
            self._reads[op.operands[0]].append(algebra.both([needed, self.point_gates(node)]))
        elif op.kind == "masked_ln":
            self._reads[op.operands[0]].append(self.mask(node))
        elif op.kind == "sum":
            for operand in op.operands:
                self._reads[operand].append(needed)
        elif op.kind == "product":
            for operand in op.operands:
                others = [self.nonzero[f] for f in op.factors if f is not operand]
                self._reads[operand].append(algebra.both([needed, *others]))
        elif op.kind == "attention":
            query, key, value = op.operands
            self._reads[value].append(needed)
            heads = algebra.spread(algebra.both([needed, self.nonzero[value]]), self.head_of(node), op.module.heads)
            for source in (query, key):
                self._reads[source].append(algebra.gather(heads, self.head_of(source, node)))
            for bias in node.args[3:]:  # a score bias: read whole
                self._read_whole(bias)
        elif op.kind == "move":
            total = sum(self.graph.ops[s].width for s in op.sources)
            spread = algebra.spread(needed, op.index, total)
            start = 0
            for source in op.sources:
                width = self.graph.ops[source].width
                self._reads[source].append(algebra.gather(spread, torch.arange(start, start + width)))
                start += width
        else:  # output, plain LayerNorm, anything unknown: every tensor input whole
            found: list[fx.Node] = []
            fx.node.map_arg((node.args, node.kwargs), lambda arg: found.append(arg) or arg)
            for argument in found:
                self._read_whole(argument)

    def _read_whole(self, node: fx.Node) -> None:
        op = self.graph.ops.get(node)
        if op is None:
            return
        if op.kind == "composite":
            for source in op.sources:
                self._read_whole(source)
        elif op.tracked and node in self._reads:
            self._reads[node].append(self.algebra.const(op.width, True))

    def out_groups(self, node: fx.Node) -> Tensor:
        module = self.graph.module_of(node)
        return torch.arange(module.groups).repeat_interleave(module.out_channels // module.groups)

    def head_of(self, node: fx.Node, attention: fx.Node | None = None) -> Tensor:
        """The head of each channel of an attention node's output, or of its operand ``node``."""
        heads = self.graph.module_of(attention or node).heads
        return torch.arange(heads).repeat_interleave(self.graph.ops[node].width // heads)

    def kept_heads(self, node: fx.Node) -> Any:
        """An attention node's heads that the purged model computes: those with a kept output channel."""
        return self.algebra.spread(self.kept(node), self.head_of(node), self.graph.module_of(node).heads)

    # --- what the purged model keeps ---
    def kept(self, node: fx.Node) -> Any:
        """Channels of ``node``'s tensor the purged model holds: non-zero and needed."""
        if node not in self._kept:
            self._kept[node] = self.algebra.both([self.nonzero[node], self.needed[node]])
        return self._kept[node]

    def columns(self, node: fx.Node) -> Any:
        """The input columns a weight node keeps (what its source keeps, and a gated Linear's open inputs)."""
        op = self.graph.ops[node]
        source = op.operands[0]
        if not self.reads_channels(node):
            module: nn.Module = op.module
            width = module.in_features if op.name == "linear" else module.in_channels
            return self.algebra.const(width, True)
        if isinstance(op.module, L0Linear) and op.module.structured:
            return self.algebra.both([self.kept(source), self.unit_gates(op.module)])
        return self.kept(source)

    def kept_groups(self, node: fx.Node) -> Any:
        """A grouped conv's groups that the purged model computes: those with a kept output channel."""
        return self.algebra.spread(self.kept(node), self.out_groups(node), self.graph.module_of(node).groups)
