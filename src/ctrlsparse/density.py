"""Densities over the sparsifiable (gated) parameters, as the paper defines them.

- layer expected density = expected active / sparsifiable parameters of one gated layer (``l0_layer``);
- model expected density = sum of expected active / sum of sparsifiable, gated layers only (``l0_model``);
- eval density = fraction of sparsifiable parameters whose deterministic eval gate is non-zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ctrlsparse import gates as hc
from ctrlsparse.layers import GatedLayer, gated_layers, sample_all_gates_


class Density:
    """Closed-form densities of one model's gated layers (names fixed at construction).

    All gates are handled at once: the layers' log alphas are concatenated, P(z != 0) is taken in one op and
    summed per layer with one ``index_add``, so the cost per step does not grow with a Python loop over layers.
    """

    def __init__(self, model: nn.Module):
        named = gated_layers(model)
        self.names: list[str] = [name for name, _ in named]
        self.kinds: list[str] = [getattr(layer, "kind", "") for _, layer in named]  # gate groups' (else "")
        self.layers: list[GatedLayer] = [layer for _, layer in named]
        self.log_alphas = [layer.log_alpha for layer in self.layers]
        self.sizes = torch.tensor([float(layer.n_sparsifiable) for layer in self.layers])
        self.total = float(self.sizes.sum()) if self.layers else 0.0
        self.counts = [layer.n_gates for layer in self.layers]
        self.layer_of_gate = torch.repeat_interleave(
            torch.arange(len(self.layers)), torch.tensor(self.counts, dtype=torch.long)
        )
        self.group_sizes = torch.tensor([float(layer.group_size) for layer in self.layers])
        # Each gate's share of the sparsifiable parameters: the tie-breaker's default weights (they sum to 1).
        self.gate_shares = self.group_sizes[self.layer_of_gate] / max(self.total, 1.0)

    def __len__(self) -> int:
        return len(self.layers)

    def _on(self, device: torch.device) -> None:
        if self.sizes.device != device:
            self.sizes = self.sizes.to(device)
            self.layer_of_gate = self.layer_of_gate.to(device)
            self.group_sizes = self.group_sizes.to(device)
            self.gate_shares = self.gate_shares.to(device)

    def _per_layer(self, per_gate: Tensor) -> Tensor:
        """Sum a per-gate quantity (all layers' gates concatenated) within each layer."""
        self._on(per_gate.device)
        sums = per_gate.new_zeros(len(self.layers)).index_add(0, self.layer_of_gate, per_gate)
        return sums * self.group_sizes

    def sample_gates_(self) -> None:
        """Draw every layer's next training gates at once (see :func:`ctrlsparse.layers.sample_all_gates_`)."""
        if self.layers and not self.layers[0].fixed:
            sample_all_gates_(self.layers, self.log_alphas, self.counts)

    def prob_active(self) -> Tensor:
        """Every gate's P(active), all layers concatenated in order (differentiable); the methods below take it
        as ``p`` so that one step computes it once for the density, the tie-breaker and the cost model."""
        return hc.prob_active(torch.cat(self.log_alphas))

    def expected_active(self, p: Tensor | None = None) -> Tensor:
        """Expected number of non-zero sparsifiable parameters per layer (differentiable), shape (n_layers,)."""
        return self._per_layer(self.prob_active() if p is None else p)

    def layer_expected(self, p: Tensor | None = None) -> Tensor:
        """Per-layer expected density (differentiable), shape (n_layers,)."""
        return self.expected_active(p) / self.sizes

    def model_expected(self, p: Tensor | None = None) -> Tensor:
        """Model-wise expected density (differentiable), a scalar."""
        return self.expected_active(p).sum() / self.total

    def coefficients(self, scope: str) -> Tensor:
        """The density entries of ``scope`` as a matrix over the per-layer sums of P(active): ``model`` one row
        (group sizes / total), ``layer`` one row per layer (group size / layer size), ``none`` no row; so
        that the entries are ``coefficients @ sums`` (how a budget run folds them into its cost form)."""
        group_sizes, sizes = self.group_sizes.cpu(), self.sizes.cpu()
        if scope == "model":
            return (group_sizes / self.total).unsqueeze(0)
        if scope == "layer":
            return torch.diag(group_sizes / sizes)
        return group_sizes.new_zeros(0, len(self.layers))

    def polarization(self, p: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
        """Weighted mean of P(active) x P(inactive) over the gates (differentiable): 0 when every gate is open or
        closed, 0.25 when every gate is a coin flip. ``weights`` (one per gate, summing to 1) default to each
        gate's share of the sparsifiable parameters, the mean over parameters; a budget run weights each gate by
        what it costs instead (:meth:`ctrlsparse.problems.constraint_set.ConstraintSet.tie_weights`)."""
        p = self.prob_active() if p is None else p
        self._on(p.device)
        return (p * (1.0 - p)) @ (self.gate_shares if weights is None else weights)

    @torch.no_grad()
    def eval_active(self) -> Tensor:
        """Sparsifiable parameters per layer that the eval model keeps (eval gate non-zero, channels rounded)."""
        return self._per_layer(torch.cat([layer.eval_open() for layer in self.layers]).float())

    @torch.no_grad()
    def layer_eval(self) -> Tensor:
        return self.eval_active() / self.sizes

    @torch.no_grad()
    def model_eval(self) -> Tensor:
        return self.eval_active().sum() / self.total
