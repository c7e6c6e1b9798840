"""The cost terms of a gated model: per layer, what the purge keeps of it, as probability expressions.

Each term is ``coefficient x sum(a) x sum(b)`` (``b`` None: ``coefficient x sum(a)``) over the channel
expressions of :class:`~ctrlsparse.channels.flow.Flow` (:class:`~ctrlsparse.channels.algebra.Expressions`),
counted as MACs or parameters, one rule per kind of node (what the purge's rebuild makes of it):

- a conv / Linear: kept input columns x kept output rows x kernel area (x output positions for MACs), plus one
  bias entry per kept row; a grouped conv: per kept group, its whole block (in / groups x out / groups x kernel);
- attention: per kept head, its QKᵀ and AV products (Tq x Tk x d each, per query position group);
- a BatchNorm: two parameters per kept channel; a masked LayerNorm: its affine parameters per open channel;
- a parameter sliced with the channels of a sum / product (a layer scale, a position embedding, a class token
  expanded before a concatenation): its entries per kept channel;
- every other parameter whole (a constant term).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ctrlsparse.channels.algebra import Expr
from ctrlsparse.channels.flow import Flow
from ctrlsparse.channels.operands import argument_at, constant_source


@dataclass(frozen=True)
class Term:
    """``coefficient * sum(a) * sum(b)`` (``b`` None: ``coefficient * sum(a)``), counted as MACs or params."""

    quantity: str
    coefficient: float
    a: Expr
    b: Expr | None = None


def cost_terms(flow: Flow, model: nn.Module) -> list[Term]:
    """Every MAC and parameter term of ``model`` that depends on the gates, plus its other parameters whole."""
    graph, algebra = flow.graph, flow.algebra
    terms: list[Term] = []
    claimed: set[int] = set()
    for node in graph.nodes:
        op = graph.ops[node]
        if op.kind == "weight":
            layer = op.module
            claimed.update(id(p) for p in (layer.weight, layer.bias) if p is not None)
            positions, pair = float(graph.positions(node)), float(layer.weight[0, 0].numel())
            if op.name == "conv" and layer.groups > 1:
                groups = flow.kept_groups(node) if flow.reads_channels(node) else algebra.const(layer.groups, True)
                block = pair * (layer.in_channels // layer.groups) * (op.width // layer.groups)
                terms += [Term("macs", block * positions, groups), Term("params", block, groups)]
                if layer.bias is not None:
                    terms.append(Term("params", float(op.width // layer.groups), groups))
                continue
            columns, rows = flow.columns(node), flow.kept(node)
            terms += [Term("macs", pair * positions, columns, rows), Term("params", pair, columns, rows)]
            if layer.bias is not None:
                terms.append(Term("params", 1.0, rows))
        elif op.kind == "attention":
            query, key, value = (graph.shapes[operand] for operand in op.operands)
            heads = op.module.heads
            per_head = math.prod(query[1:-1]) * key[-2] * (query[-1] + value[-1]) // heads
            terms.append(Term("macs", float(per_head), flow.kept_heads(node)))
        elif op.kind in ("norm", "masked_bn") and op.module.affine:
            claimed.update((id(op.module.weight), id(op.module.bias)))
            terms.append(Term("params", 2.0, flow.kept(node)))
        elif op.kind == "masked_ln":
            constants = [graph.constant(n) for n in node.args[1:3] if n is not None]
            claimed.update(id(c) for c in constants)
            if constants:
                terms.append(Term("params", float(len(constants)), flow.mask(node)))
        elif op.kind in ("sum", "product"):
            for position, _ in op.sliced:
                argument = constant_source(argument_at(node.args, position), graph.shapes)
                if argument is not None and isinstance(graph.constant(argument), nn.Parameter):
                    constant = graph.constant(argument)
                    claimed.add(id(constant))
                    terms.append(Term("params", float(constant.numel() // op.width), flow.kept(node)))
    whole = sum(
        p.numel() for name, p in model.named_parameters() if id(p) not in claimed and not name.endswith("log_alpha")
    )
    if whole:
        terms.append(Term("params", float(whole), algebra.const(1, True)))
    return terms
