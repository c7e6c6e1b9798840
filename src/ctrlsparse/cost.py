"""Expected MACs and parameters of a gated model: differentiable functions of the gates' P(active).

The purge (:mod:`ctrlsparse.purge.plan`) keeps channel c of a tensor when it may be non-zero and some consumer
reads it; a Conv2d / Linear of the purged model then costs (kept input columns) x (kept output rows) x its
per-pair cost (kernel area x output H*W for MACs, kernel area for weights) plus one bias entry per row, and a
BatchNorm two parameters per kept channel. :class:`ExpectedCost` writes the same two passes over the same
torch.fx trace and node kinds with probabilities in place of booleans, once at construction:

- non-zero (forward): a gated conv's channel is non-zero with its gate's P(active); ReLU, pooling and the masked
  BatchNorm pass it on; a plain BatchNorm and anything unknown make every channel non-zero (1); a flatten repeats
  a channel's probability over its H*W; a residual add is non-zero where any summed input is: 1 - prod(1 - p).
- needed (backward): a gated Linear reads input j with P(active) of gate j; a flatten reads channel c when any of
  its H*W entries is read, 1 - prod(1 - p); several consumers likewise; a conv or an unknown op reads every channel.
- a layer's expected cost = E[kept inputs] x E[kept outputs] x per-pair cost, E[kept] = sum_c P(non-zero) x
  P(needed). Inputs and outputs of one layer are decided by disjoint gates (upstream convs and this Linear's
  gates vs this conv's gates and downstream Linears' gates), so the product of expectations is E[in x out].

With every P exactly 0 or 1 each formula is the purge's boolean rule, so the expected cost is the purged model's
(FlopCounterMode MACs, parameter count) exactly, and at all-open the dense model's. With fractional P the OR
terms assume the summed / reading gates independent: exact for a residual add of a block's conv output and a
shortcut fed by other gates (every registered arch); where both sides share gates it over-counts a little.
One exception to exactness: the purge keeps one channel of a layer whose gates are all closed; this counts 0.
MACs of ops the walk does not model (they receive full-width inputs, so their cost does not depend on the gates)
are a constant measured once with the purge's counter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from ctrlsparse import gates as hc
from ctrlsparse.layers import GatedLayer, L0Conv2d, L0Linear, gated_layers
from ctrlsparse.purge.count import count
from ctrlsparse.purge.graph import Traced, flatten_area, kind, trace
from ctrlsparse.purge.plan import tensor_inputs


@dataclass(frozen=True, eq=False)
class Expr:
    """A per-channel probability vector: ``one``/``zero`` (constant), ``gates`` (layer ``arg``'s P(active)),
    ``or`` / ``and`` of ``parts``, ``repeat`` (each entry ``arg`` times) or ``any`` (1 - prod(1 - p) over runs of
    ``arg`` entries)."""

    op: str
    width: int
    arg: int = 0
    parts: tuple[Expr, ...] = ()


def one(width: int) -> Expr:
    return Expr("one", width)


def zero(width: int) -> Expr:
    return Expr("zero", width)


def either(parts: list[Expr]) -> Expr:
    """Non-zero / needed where any part is: 1 - prod(1 - p) (constants folded)."""
    live = [part for part in parts if part.op != "zero"]
    if any(part.op == "one" for part in live):
        return one(live[0].width)
    unique = list({id(part): part for part in live}.values())  # the same vector twice is one event
    if not unique:
        return zero(parts[0].width)
    return unique[0] if len(unique) == 1 else Expr("or", unique[0].width, parts=tuple(unique))


def both(a: Expr, b: Expr) -> Expr:
    if a.op == "zero" or b.op == "zero":
        return zero(a.width)
    if a.op == "one":
        return b
    return a if b.op == "one" else Expr("and", a.width, parts=(a, b))


def repeat(a: Expr, area: int) -> Expr:
    return Expr(a.op, a.width * area) if a.op in ("one", "zero") else Expr("repeat", a.width * area, area, (a,))


def any_of(a: Expr, area: int) -> Expr:
    return Expr(a.op, a.width // area) if a.op in ("one", "zero") else Expr("any", a.width // area, area, (a,))


@dataclass(frozen=True)
class Term:
    """``coefficient * sum(a) * sum(b)`` (``b`` None: ``coefficient * sum(a)``), counted as MACs or params."""

    quantity: str
    coefficient: float
    a: Expr
    b: Expr | None = None


class ExpectedCost:
    """Closed-form expected MACs and parameters of ``model`` (traced once on ``example``), see the module doc."""

    def __init__(self, model: nn.Module, example: Tensor):
        named = gated_layers(model)
        unstructured = [name for name, layer in named if not layer.structured]
        if unstructured:
            raise ValueError(f"layer {unstructured[0]} is gated per weight; MAC/param budgets need structured gates")
        self.layers: list[GatedLayer] = [layer for _, layer in named]
        self.log_alphas = [layer.log_alpha for layer in self.layers]
        self.counts = [layer.n_gates for layer in self.layers]
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                traced = trace(model, example[:1])
                dense = count(model, example[:1])
        finally:
            model.train(training)
        index = {id(layer): i for i, layer in enumerate(self.layers)}
        self.terms = _terms(traced, index)
        self.dense_macs, self.dense_params = float(dense.macs), float(dense.params)
        self._compile(len(self.layers))
        self.unmodelled_macs = 0.0
        all_open = self.costs(torch.ones(sum(self.counts), dtype=torch.float64))
        self.unmodelled_macs = self.dense_macs - float(all_open["macs"])  # ops outside the walk (full width)

    def _compile(self, n_layers: int) -> None:
        """The terms as one small program: a vector s of sums (s[0] = 1, then each layer's sum of P, then the sum
        of every other expression), and per term two indices into s and a coefficient for MACs and params, so
        that a call costs a handful of tensor ops whatever the number of terms."""
        slots: dict[int, int] = {}
        self._vectors: list[Expr] = []

        def slot(expr: Expr | None) -> tuple[int, float]:  # (index into s, constant factor)
            if expr is None or expr.op == "one":
                return 0, 1.0 if expr is None else float(expr.width)
            if expr.op == "gates":
                return 1 + expr.arg, 1.0
            if id(expr) not in slots:
                slots[id(expr)] = 1 + n_layers + len(self._vectors)
                self._vectors.append(expr)
            return slots[id(expr)], 1.0

        first, second, weights = [], [], []
        for term in self.terms:
            if term.a.op == "zero" or (term.b is not None and term.b.op == "zero"):
                continue
            (a, factor_a), (b, factor_b) = slot(term.a), slot(term.b)
            first.append(a)
            second.append(b)
            coefficient = term.coefficient * factor_a * factor_b
            weights.append([coefficient if term.quantity == quantity else 0.0 for quantity in ("macs", "params")])
        self._first, self._second = torch.tensor(first, dtype=torch.long), torch.tensor(second, dtype=torch.long)
        self._weights = torch.tensor(weights, dtype=torch.float64).reshape(-1, 2).T.contiguous()
        self._layer_of_gate = torch.repeat_interleave(
            torch.arange(n_layers), torch.tensor(self.counts, dtype=torch.long)
        )
        self._n_layers = n_layers
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    def _constants(self, p: Tensor) -> tuple[Tensor, ...]:
        key = (p.device, p.dtype)
        if key not in self._cache:
            self._cache[key] = (
                self._first.to(p.device),
                self._second.to(p.device),
                self._weights.to(p.device, p.dtype),
                self._layer_of_gate.to(p.device),
                torch.tensor([1.0, 0.0], device=p.device, dtype=p.dtype),
                torch.tensor([1.0 / self.dense_macs, 1.0 / self.dense_params], device=p.device, dtype=p.dtype),
            )
        return self._cache[key]

    def costs(self, p: Tensor) -> dict[str, Tensor]:
        """Expected ``macs`` and ``params`` given every gate's P(active), all layers concatenated in order."""
        totals = self._totals(p)
        return {"macs": totals[0], "params": totals[1]}

    def _totals(self, p: Tensor) -> Tensor:
        first, second, weights, layer_of_gate, macs_only, _ = self._constants(p)
        sums = [p.new_ones(1), p.new_zeros(self._n_layers).index_add(0, layer_of_gate, p)]
        if self._vectors:
            parts, memo = p.split(self.counts), {}
            sums.append(torch.stack([_vector(expr, parts, memo).sum() for expr in self._vectors]))
        s = torch.cat(sums)
        return weights @ (s[first] * s[second]) + self.unmodelled_macs * macs_only

    def share_vector(self, p: Tensor | None = None) -> Tensor:
        """[expected MAC share, expected param share] of the dense model, at ``p`` (default: the gates' P)."""
        if p is None:
            p = hc.prob_active(torch.cat(self.log_alphas)) if self.layers else torch.zeros(0)
        return self._totals(p) * self._constants(p)[5]

    def expected(self) -> dict[str, Tensor]:
        """Expected MACs and params at the gates' current P(active) (differentiable in log alpha)."""
        p = hc.prob_active(torch.cat(self.log_alphas)) if self.layers else torch.zeros(0)
        return self.costs(p)

    def shares(self) -> dict[str, Tensor]:
        """Expected MACs and params as fractions of the dense model's."""
        shares = self.share_vector()
        return {"macs": shares[0], "params": shares[1]}


def _vector(expr: Expr, parts: list[Tensor] | tuple[Tensor, ...], memo: dict[int, Tensor]) -> Tensor:
    if id(expr) in memo:
        return memo[id(expr)]
    if expr.op == "gates":
        value = parts[expr.arg]
    elif expr.op == "or":
        closed = [1.0 - _vector(part, parts, memo) for part in expr.parts]
        value = 1.0 - torch.stack(closed).prod(0)
    elif expr.op == "and":
        value = _vector(expr.parts[0], parts, memo) * _vector(expr.parts[1], parts, memo)
    elif expr.op == "repeat":
        value = _vector(expr.parts[0], parts, memo).repeat_interleave(expr.arg)
    elif expr.op == "any":
        value = 1.0 - (1.0 - _vector(expr.parts[0], parts, memo)).view(-1, expr.arg).prod(1)
    else:  # one / zero inside an or/and that was not folded
        value = (parts[0] if parts else torch.zeros(1)).new_full((expr.width,), 1.0 if expr.op == "one" else 0.0)
    memo[id(expr)] = value
    return value


def _terms(traced: Traced, index: dict[int, int]) -> list[Term]:
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
            terms += _weight_terms(node, module(node), held, held_nonzero, traced, gates, grouped(node))
        elif node_kind == "batchnorm" and module(node).affine:
            terms.append(Term("params", 2.0, held[node]))
        elif node.op == "call_module" and node_kind not in ("batchnorm",) and id(module(node)) not in counted:
            counted.add(id(module(node)))  # an op the purge keeps whole: its parameters, at full size
            size = sum(p.numel() for name, p in module(node).named_parameters() if not name.endswith("log_alpha"))
            if size:
                terms.append(Term("params", float(size), one(1)))
    return terms


def _weight_terms(node, layer, held, held_nonzero, traced, gates, grouped) -> list[Term]:
    source = node.args[0]
    if grouped:
        macs = float(traced.channels(node) * layer.weight[0].numel() * _area(traced.shapes[node]))
        params = float(sum(p.numel() for n, p in layer.named_parameters() if not n.endswith("log_alpha")))
        return [Term("macs", macs, one(1)), Term("params", params, one(1))]
    # a Linear reads the inputs whose gates are open, of those its source holds; a conv all its source holds
    columns = both(held_nonzero[source], gates(layer)) if isinstance(layer, L0Linear) else held[source]
    rows = held[node]
    pair = float(layer.weight[0, 0].numel())  # kernel area (1 for a Linear)
    terms = [
        Term("macs", pair * _area(traced.shapes[node]), columns, rows),
        Term("params", pair, columns, rows),
    ]
    if layer.bias is not None:
        terms.append(Term("params", 1.0, rows))
    return terms


def _area(shape: tuple[int, ...] | None) -> int:
    """H*W of a conv's output (1 for a Linear's (N, F))."""
    area = 1
    for size in (shape or ())[2:]:
        area *= size
    return area
