"""Closed-form expected MACs and parameters of a gated model (see :mod:`ctrlsparse.cost` for the rules)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ctrlsparse import gates as hc
from ctrlsparse.cost.expr import Expr, signature, vector
from ctrlsparse.cost.terms import cost_terms
from ctrlsparse.layers import GatedLayer, gated_layers
from ctrlsparse.purge.count import count
from ctrlsparse.purge.graph import trace


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
        self.terms = cost_terms(traced, index)
        self.dense_macs, self.dense_params = float(dense.macs), float(dense.params)
        self._compile(len(self.layers))
        all_open = self.costs(torch.ones(sum(self.counts), dtype=torch.float64))
        self.unmodelled_macs = self.dense_macs - float(all_open["macs"])  # ops outside the walk (full width)
        self._form[0, 0, 0] += self.unmodelled_macs  # s[0] = 1: a constant term of the MACs
        self._cache.clear()

    def _compile(self, n_layers: int) -> None:
        """The terms as one quadratic form per quantity: a vector s of sums (s[0] = 1, then each layer's sum of
        P, then the sum of every other expression) and a matrix A_k with cost_k = s^T A_k s, so that a call is
        two matrix-vector products whatever the number of terms (and its gradient two more)."""
        slots: dict[tuple, int] = {}
        self._vectors: list[Expr] = []

        def slot(expr: Expr | None) -> tuple[int, float]:  # (index into s, constant factor)
            if expr is None or expr.op == "one":
                return 0, 1.0 if expr is None else float(expr.width)
            if expr.op == "gates":
                return 1 + expr.arg, 1.0
            key = signature(expr)  # the same expression reached twice (two terms, two paths) is summed once
            if key not in slots:
                slots[key] = 1 + n_layers + len(self._vectors)
                self._vectors.append(expr)
            return slots[key], 1.0

        entries = []
        for term in self.terms:
            if term.a.op == "zero" or (term.b is not None and term.b.op == "zero"):
                continue
            (a, factor_a), (b, factor_b) = slot(term.a), slot(term.b)
            entries.append((("macs", "params").index(term.quantity), a, b, term.coefficient * factor_a * factor_b))
        size = 1 + n_layers + len(self._vectors)
        self._form = torch.zeros(2, size, size, dtype=torch.float64)
        for quantity, a, b, coefficient in entries:
            self._form[quantity, a, b] += coefficient
        self._layer_of_gate = torch.repeat_interleave(
            torch.arange(n_layers), torch.tensor(self.counts, dtype=torch.long)
        )
        self._n_layers = n_layers
        self._budget_form = torch.zeros(0, size, size, dtype=torch.float64)  # set_budgets
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    def _constants(self, p: Tensor) -> tuple[Tensor, ...]:
        """(A in MACs / params, A in shares of the dense model, gate -> layer index, [1], the budgets' form or an
        empty tensor) on p's device and dtype."""
        key = (p.device, p.dtype)
        if key not in self._cache:
            dense = torch.tensor([self.dense_macs, self.dense_params], dtype=torch.float64).view(2, 1, 1)
            self._cache[key] = (
                self._form.to(p.device, p.dtype),
                (self._form / dense).to(p.device, p.dtype),
                self._layer_of_gate.to(p.device),
                torch.ones(1, device=p.device, dtype=p.dtype),
                self._budget_form.to(p.device, p.dtype),
            )
        return self._cache[key]

    def _sums(self, p: Tensor) -> Tensor:
        _, _, layer_of_gate, one, _ = self._constants(p)
        sums = [one, p.new_zeros(self._n_layers).index_add(0, layer_of_gate, p)]
        if self._vectors:
            parts, memo = p.split(self.counts), {}
            sums.append(torch.stack([vector(expr, parts, memo).sum() for expr in self._vectors]))
        return torch.cat(sums)

    @staticmethod
    def _quadratic(form: Tensor, s: Tensor) -> Tensor:
        return (form @ s) @ s

    def costs(self, p: Tensor) -> dict[str, Tensor]:
        """Expected ``macs`` and ``params`` given every gate's P(active), all layers concatenated in order."""
        totals = self._quadratic(self._constants(p)[0], self._sums(p))
        return {"macs": totals[0], "params": totals[1]}

    def share_vector(self, p: Tensor | None = None) -> Tensor:
        """[expected MAC share, expected param share] of the dense model, at ``p`` (default: the gates' P)."""
        if p is None:
            p = hc.prob_active(torch.cat(self.log_alphas)) if self.layers else torch.zeros(0)
        return self._quadratic(self._constants(p)[1], self._sums(p))

    def set_budgets(self, budgets: dict[str, float], relative: bool) -> None:
        """Fold budgets into the form: :meth:`violations` then returns, per kind in order, share - budget
        (relative: (share - budget) / budget) in the same two products as the shares, no op more per step."""
        rows = []
        for kind, budget in budgets.items():
            quantity = ("macs", "params").index(kind)
            row = self._form[quantity] / (self.dense_macs, self.dense_params)[quantity]
            row[0, 0] -= budget  # s[0] = 1
            rows.append(row / budget if relative else row)
        self._budget_form = torch.stack(rows)
        self._cache.clear()

    def violations(self, p: Tensor) -> Tensor:
        """The budgets' violations at ``p`` (see :meth:`set_budgets`), differentiable."""
        return self._quadratic(self._constants(p)[4], self._sums(p))

    def shares(self) -> dict[str, Tensor]:
        """Expected MACs and params as fractions of the dense model's."""
        shares = self.share_vector()
        return {"macs": shares[0], "params": shares[1]}
