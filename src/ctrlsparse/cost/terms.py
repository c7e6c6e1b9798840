"""The purge's two passes (non-zero forward, needed backward) over a torch.fx trace, written with probability
expressions instead of boolean masks: the cost terms of :class:`~ctrlsparse.cost.ExpectedCost`."""

from __future__ import annotations

from torch import fx, nn

from ctrlsparse.cost.expr import Expr, Term, any_of, both, either, one, repeat, zero
from ctrlsparse.layers import L0Conv2d, L0Linear
from ctrlsparse.purge.graph import Traced, flatten_area, kind
from ctrlsparse.purge.plan import tensor_inputs


def cost_terms(traced: Traced, index: dict[int, int]) -> list[Term]:
    """The purge's two passes (:class:`~ctrlsparse.purge.plan.Plan`) over expressions instead of masks."""
    nodes = list(traced.module.graph.nodes)
    kinds = {node: kind(node, traced) for node in nodes}

    def module(node: fx.Node) -> nn.Module:
        return traced.modules[str(node.target)]

    def gates(layer: nn.Module) -> Expr:
        return Expr("gates", layer.n_gates, index[id(layer)])

    def grouped(node: fx.Node) -> bool:
        return isinstance(module(node), nn.Conv2d) and module(node).groups != 1

    nonzero: dict[fx.Node, Expr] = {}
    for node in nodes:
        width, node_kind = traced.channels(node), kinds[node]
        if width is None:
            continue
        if node_kind == "weight" and isinstance(module(node), L0Conv2d):
            nonzero[node] = gates(module(node))
        elif node_kind == "channelwise" or (node_kind == "batchnorm" and len(node.args) > 1):
            nonzero[node] = nonzero[node.args[0]]  # the masked BatchNorm's mask is its conv's own gates
        elif node_kind == "add":
            nonzero[node] = either([nonzero[node.args[0]], nonzero[node.args[1]]])
        elif node_kind == "flatten":
            nonzero[node] = repeat(nonzero[node.args[0]], flatten_area(node, traced))
        else:
            nonzero[node] = one(width)
    reads: dict[fx.Node, list[Expr]] = {node: [] for node in nonzero}
    needed: dict[fx.Node, Expr] = {}
    for node in reversed(nodes):
        node_kind = kinds[node]
        if node in nonzero:
            needed[node] = either(reads[node]) if reads[node] else zero(nonzero[node].width)
        if node_kind == "batch_size":
            continue
        if node_kind in ("channelwise", "batchnorm", "add", "flatten"):
            for source in node.args[:2] if node_kind == "add" else node.args[:1]:
                wanted = needed[node]
                reads[source].append(any_of(wanted, flatten_area(node, traced)) if node_kind == "flatten" else wanted)
        elif node_kind == "weight":
            layer = module(node)
            source = node.args[0]
            reads[source].append(gates(layer) if isinstance(layer, L0Linear) else one(nonzero[source].width))
        else:
            for source in tensor_inputs(node, traced):
                reads[source].append(one(nonzero[source].width))
    held: dict[fx.Node, Expr] = {}  # what the purged tensor holds
    held_nonzero: dict[fx.Node, Expr] = {}  # the same without the "needed" factor
    for node in nodes:
        if node not in nonzero:
            continue
        node_kind = kinds[node]
        if node_kind in ("channelwise", "batchnorm", "add") or (node_kind == "weight" and not grouped(node)):
            held[node], held_nonzero[node] = both(nonzero[node], needed[node]), nonzero[node]
        elif node_kind == "flatten":
            area = flatten_area(node, traced)
            held[node] = repeat(held[node.args[0]], area)
            held_nonzero[node] = repeat(held_nonzero[node.args[0]], area)
        else:
            held[node] = held_nonzero[node] = one(nonzero[node].width)
    terms: list[Term] = []
    counted: set[int] = set()
    for node in nodes:
        node_kind = kinds[node]
        if node_kind == "weight":
            terms += weight_terms(node, module(node), held, held_nonzero, traced, gates, grouped(node))
        elif node_kind == "batchnorm" and module(node).affine:
            terms.append(Term("params", 2.0, held[node]))
        elif node.op == "call_module" and node_kind not in ("batchnorm",) and id(module(node)) not in counted:
            counted.add(id(module(node)))  # an op the purge keeps whole: its parameters, at full size
            size = sum(p.numel() for name, p in module(node).named_parameters() if not name.endswith("log_alpha"))
            if size:
                terms.append(Term("params", float(size), one(1)))
    return terms


def weight_terms(node, layer, held, held_nonzero, traced, gates, grouped) -> list[Term]:
    source = node.args[0]
    if grouped:
        macs = float(traced.channels(node) * layer.weight[0].numel() * spatial_size(traced.shapes[node]))
        params = float(sum(p.numel() for n, p in layer.named_parameters() if not n.endswith("log_alpha")))
        return [Term("macs", macs, one(1)), Term("params", params, one(1))]
    # a Linear reads the inputs whose gates are open, of those its source holds; a conv all its source holds
    columns = both(held_nonzero[source], gates(layer)) if isinstance(layer, L0Linear) else held[source]
    rows = held[node]
    pair = float(layer.weight[0, 0].numel())  # kernel area (1 for a Linear)
    terms = [
        Term("macs", pair * spatial_size(traced.shapes[node]), columns, rows),
        Term("params", pair, columns, rows),
    ]
    if layer.bias is not None:
        terms.append(Term("params", 1.0, rows))
    return terms


def spatial_size(shape: tuple[int, ...] | None) -> int:
    """H*W of a conv's output (1 for a Linear's (N, F))."""
    area = 1
    for size in (shape or ())[2:]:
        area *= size
    return area
