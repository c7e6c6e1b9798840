"""A residual add whose one operand lacks some of the kept channels: added into the other with one ``index_add``.

The paper archs gate a block's last conv by itself while the stream it is added to keeps more channels (the
registered ResNets' ``ChannelPad`` shortcut, WRN's unpurged stream). Re-indexing that operand to the sum's
channels takes three ops, each a full-width copy: a zero slice concatenated to it, an ``index_select`` of the
result and the add. ``index_add(stream, dim, positions, branch)`` is one op, the same sums in the same order (the
branch's channel c added to the stream's: exact, and ONNX exports it as a scatter-add): the registered resnet18's
purge went from 16 extra ops to 8 (``benchmarks/latency.py``'s *extra ops*).
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor, fx

PLAIN_ADDS = {operator.add, operator.iadd, torch.add}


def index_add_sum(builder, node: fx.Node, keep: Tensor) -> fx.Node | None:
    """The purged ``a + b`` (``node``, a ``sum`` op keeping ``keep``) as one ``index_add`` when one operand holds
    every kept channel and the other does not; None when the general re-indexing applies."""
    graph = builder.graph
    op = graph.ops[node]
    operands = node.args
    if (
        node.op != "call_function"
        or node.target not in PLAIN_ADDS
        or op.sliced
        or len(operands) != 2
        or not all(isinstance(a, fx.Node) and a in builder.layouts for a in operands)
        or operands[0] is operands[1]
        or set(op.operands) != set(operands)
        or graph.shapes[operands[0]] != graph.shapes[operands[1]]
    ):
        return None
    covers = [bool(torch.isin(keep, builder.layouts[a]).all()) for a in operands]
    if covers.count(True) != 1:
        return None
    stream, branch = operands if covers[0] else operands[::-1]
    held = builder.layouts[branch]
    inside = held[torch.isin(held, keep)]
    base = builder.adapt(stream, keep)
    if not len(inside):
        return base
    position = torch.full((op.width,), -1, dtype=torch.long)
    position[keep] = torch.arange(len(keep))
    part = builder.adapt(branch, inside)
    return builder.new.call_function(torch.index_add, (base, op.dim, builder.tensor("index", position[inside]), part))
