"""Closed-form expected MACs and parameters of a gated model (see :mod:`ctrlsparse.cost` for the rules)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ctrlsparse import gates as hc
from ctrlsparse.channels import trace
from ctrlsparse.channels.algebra import Expr, Expressions, vector
from ctrlsparse.channels.flow import Flow, gate_offsets
from ctrlsparse.cost.terms import cost_terms
from ctrlsparse.layers import Gates, gated_layers
from ctrlsparse.purge.count import count

# What the cost model counts, in the order of its form's rows (a budget kind of the same name reads its share).
QUANTITIES = ("macs", "params")


class ExpectedCost:
    """Closed-form expected MACs and parameters of ``model`` (traced once on ``example``), see the module doc."""

    def __init__(self, model: nn.Module, example: Tensor):
        named = gated_layers(model)
        unstructured = [name for name, layer in named if not layer.structured]
        if unstructured:
            raise ValueError(f"layer {unstructured[0]} is gated per weight; MAC/param budgets need structured gates")
        self.layers: list[Gates] = [layer for _, layer in named]
        self.log_alphas = [layer.log_alpha for layer in self.layers]
        self.counts = [layer.n_gates for layer in self.layers]
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                graph = trace(model, example[:1])
                dense = count(model, example[:1])
        finally:
            model.train(training)
        self.graph = graph  # the gated model's channel graph (ctrlsparse.gate checks its gate points on it)
        self.algebra = Expressions(sum(self.counts))
        flow = Flow(graph, self.algebra, gate_offsets(self.layers))
        self.terms = cost_terms(flow, model)
        self.dense_macs, self.dense_params = float(dense.macs), float(dense.params)
        self._dense = (self.dense_macs, self.dense_params)  # in QUANTITIES order
        self._compile()
        all_open = self.costs(torch.ones(sum(self.counts), dtype=torch.float64))
        self.unmodelled_macs = self.dense_macs - float(all_open["macs"])  # ops outside the walk (full width)
        self._form[QUANTITIES.index("macs"), 0, 0] += self.unmodelled_macs  # s[0] = 1: a constant term of the MACs
        self._cache.clear()

    def _compile(self) -> None:
        """The terms as one quadratic form per quantity: a vector s of sums (s[0] = 1, then each gate set's sum
        of P, then the sum of every other expression) and a matrix A_k with cost_k = s^T A_k s, so that a call is
        two matrix-vector products whatever the number of terms (and its gradient two more). A literal
        expression's sum is a sum of entries of [P, 1, 0] (one gather); any other is evaluated per call."""
        n_layers, algebra = len(self.layers), self.algebra
        slots: dict[tuple, int] = {}
        self._literals: list[Tensor] = []  # ids of each literal slot beyond the gate sets' own sums
        self._vectors: list[Expr] = []
        start = 0
        for i, n in enumerate(self.counts):  # slot 1 + i: gate set i's own sum (the density's per-layer sums)
            slots[algebra.lit(torch.arange(start, start + n)).key] = 1 + i
            start += n

        def slot(expr: Expr | None) -> tuple[int, float]:  # (index into s, constant factor)
            if expr is None:
                return 0, 1.0
            if expr.op == "lit" and bool((expr.ids >= algebra.one).all()):
                return 0, float((expr.ids == algebra.one).sum())  # constants only
            if expr.key not in slots:  # the same expression reached twice (two terms, two paths) is summed once
                slots[expr.key] = -1 - len(slots)  # placeholder, numbered below
                (self._literals if expr.op == "lit" else self._vectors).append(expr)
            return slots[expr.key], 1.0

        entries = []
        for term in self.terms:
            (a, factor_a), (b, factor_b) = slot(term.a), slot(term.b)
            coefficient = term.coefficient * factor_a * factor_b
            if coefficient:
                entries.append((QUANTITIES.index(term.quantity), term.a, term.b, a, b, coefficient))
        # number the other slots: literals first (one gather), then the evaluated expressions
        order = {e.key: 1 + n_layers + i for i, e in enumerate([*self._literals, *self._vectors])}
        size = 1 + n_layers + len(order)

        def final(expr: Expr | None, index: int) -> int:
            return order[expr.key] if index < 0 else index

        self._form = torch.zeros(len(QUANTITIES), size, size, dtype=torch.float64)
        for quantity, expr_a, expr_b, a, b, coefficient in entries:
            self._form[quantity, final(expr_a, a), final(expr_b, b)] += coefficient
        # s = one index_add of [P, the literals' entries of [P, 1, 0], each expression's entries] into [1, 0, ...]
        layer_of_gate = torch.repeat_interleave(torch.arange(n_layers), torch.tensor(self.counts, dtype=torch.long))
        self._literal_ids = torch.cat([e.ids for e in self._literals]) if self._literals else torch.zeros(0).long()
        slot_of_entry = [1 + layer_of_gate] + [
            torch.full((e.width,), order[e.key], dtype=torch.long) for e in [*self._literals, *self._vectors]
        ]
        self._slot_of_entry = torch.cat(slot_of_entry)
        self._size, self._n_layers = size, n_layers
        self._constraint_form = torch.zeros(0, size, size, dtype=torch.float64)  # set_constraints
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    def _constants(self, p: Tensor) -> tuple[Tensor, ...]:
        """(A in MACs / params, A in shares of the dense model, entry -> slot of s, s's constant part [1, 0, ...],
        the constraints' form or an empty tensor, the literal slots' gate ids) on p's device and dtype."""
        key = (p.device, p.dtype)
        if key not in self._cache:
            dense = torch.tensor(self._dense, dtype=torch.float64).view(-1, 1, 1)
            base = torch.zeros(self._size, device=p.device, dtype=p.dtype)
            base[0] = 1.0
            self._cache[key] = (
                self._form.to(p.device, p.dtype),
                (self._form / dense).to(p.device, p.dtype),
                self._slot_of_entry.to(p.device),
                base,
                self._constraint_form.to(p.device, p.dtype),
                self._literal_ids.to(p.device),
            )
        return self._cache[key]

    def _sums(self, p: Tensor) -> Tensor:
        _, _, slot_of_entry, base, _, literal_ids = self._constants(p)
        if self._literals or self._vectors:
            extended = torch.cat([p, p.new_tensor([1.0, 0.0])])  # ids n and n + 1: the constants
            memo: dict[int, Tensor] = {}
            vectors = [vector(expr, extended, memo) for expr in self._vectors]
            p = torch.cat([p, extended[literal_ids], *vectors])  # every entry of s's sums
        return base.index_add(0, slot_of_entry, p)

    @staticmethod
    def _quadratic(form: Tensor, s: Tensor) -> Tensor:
        return (form @ s) @ s

    def costs(self, p: Tensor) -> dict[str, Tensor]:
        """Expected ``macs`` and ``params`` given every gate's P(active), all layers concatenated in order."""
        totals = self._quadratic(self._constants(p)[0], self._sums(p))
        return dict(zip(QUANTITIES, totals, strict=True))

    def share_vector(self, p: Tensor | None = None) -> Tensor:
        """[expected MAC share, expected param share] of the dense model, at ``p`` (default: the gates' P)."""
        if p is None:
            p = hc.prob_active(torch.cat(self.log_alphas)) if self.layers else torch.zeros(0)
        return self._quadratic(self._constants(p)[1], self._sums(p))

    def share(self, quantity: str, p: Tensor | None = None) -> Tensor:
        """The expected share of the dense model's ``quantity`` (macs, params) at ``p``, shaped (1,)."""
        index = QUANTITIES.index(quantity)
        return self.share_vector(p)[index : index + 1]

    def exact_shares(self, gates: Tensor) -> dict[str, float]:
        """Each quantity's share of the dense model at 0/1 ``gates``, counted in float64 (exact): the purged
        model's share when ``gates`` are the eval gates."""
        totals = self.costs(gates.double())
        return {q: float(totals[q]) / dense for q, dense in zip(QUANTITIES, self._dense, strict=True)}

    def set_constraints(self, density_rows: Tensor, targets: Tensor, budgets: dict[str, float], relative: bool) -> None:
        """Fold a run's constraints into the form: :meth:`violations` then returns, in order, each density entry's
        g - target, g = ``density_rows[i] . (per-layer sums of P)`` (a density is linear in them; no row: no
        density entry), then per budget kind share - budget (relative: both divided by their target), in the
        same two products as the shares: the whole violation vector of a budget run costs no op more than its
        budgets."""
        rows = []
        for row, target in zip(density_rows.double().cpu(), targets.double().cpu().tolist(), strict=True):
            form = torch.zeros(self._size, self._size, dtype=torch.float64)
            form[0, 1 : 1 + self._n_layers] = row
            form[0, 0] = -target
            rows.append(form / target if relative else form)
        for kind, budget in budgets.items():
            quantity = QUANTITIES.index(kind)
            form = self._form[quantity] / self._dense[quantity]
            form[0, 0] -= budget  # s[0] = 1
            rows.append(form / budget if relative else form)
        self._constraint_form = torch.stack(rows) if rows else torch.zeros(0, self._size, self._size)
        self._cache.clear()

    def violations(self, p: Tensor) -> Tensor:
        """The constraints' violations at ``p`` (see :meth:`set_constraints`), differentiable."""
        return self._quadratic(self._constants(p)[4], self._sums(p))

    def gate_shares(self) -> dict[str, Tensor]:
        """Per kind, each gate's share of what the gates decide in the dense model: d share / d P(active) at
        all-open, normalised to sum to 1 (what closing that gate alone saves, as a fraction of what closing
        every gate would). A conv channel that feeds the next conv's every position weighs hundreds of times a
        classifier input. Float64, on the CPU."""
        ones = torch.ones(sum(self.counts), dtype=torch.float64, requires_grad=True)
        shares = self.share_vector(ones)
        rows = {}
        for quantity, kind in enumerate(QUANTITIES):
            (grad,) = torch.autograd.grad(shares[quantity], ones, retain_graph=True)
            rows[kind] = grad / grad.sum() if grad.sum() > 0 else grad
        return rows

    def removed_by_each_gate(self, kind: str) -> Tensor:
        """The MACs or parameters (``kind``) each gate removes when it alone closes: d cost / d P(active) at
        all-open (the cost is multilinear in distinct gates). Float64, on the CPU."""
        ones = torch.ones(sum(self.counts), dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(self.costs(ones)[kind], ones)
        return grad

    def shares(self) -> dict[str, Tensor]:
        """Expected MACs and params as fractions of the dense model's."""
        return dict(zip(QUANTITIES, self.share_vector(), strict=True))
