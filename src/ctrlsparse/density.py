"""Densities over the sparsifiable (gated) parameters, as the paper defines them.

- layer expected density = expected active / sparsifiable parameters of one gated layer (``l0_layer``);
- model expected density = sum of expected active / sum of sparsifiable, gated layers only (``l0_model``);
- eval density = fraction of sparsifiable parameters whose deterministic eval gate is non-zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ctrlsparse.layers import GatedLayer, gated_layers


class Density:
    """Closed-form densities of one model's gated layers (names fixed at construction)."""

    def __init__(self, model: nn.Module):
        named = gated_layers(model)
        self.names: list[str] = [name for name, _ in named]
        self.layers: list[GatedLayer] = [layer for _, layer in named]
        self.sizes = torch.tensor([float(layer.n_sparsifiable) for layer in self.layers])
        self.total = float(self.sizes.sum()) if self.layers else 0.0

    def __len__(self) -> int:
        return len(self.layers)

    def _sizes(self, like: Tensor) -> Tensor:
        if self.sizes.device != like.device:
            self.sizes = self.sizes.to(like.device)
        return self.sizes

    def expected_active(self) -> Tensor:
        return torch.stack([layer.expected_active() for layer in self.layers])

    def layer_expected(self) -> Tensor:
        """Per-layer expected density (differentiable), shape (n_layers,)."""
        active = self.expected_active()
        return active / self._sizes(active)

    def model_expected(self) -> Tensor:
        """Model-wise expected density (differentiable), a scalar."""
        return self.expected_active().sum() / self.total

    @torch.no_grad()
    def layer_eval(self) -> Tensor:
        active = torch.stack([layer.eval_active() for layer in self.layers]).float()
        return active / self._sizes(active)

    @torch.no_grad()
    def model_eval(self) -> Tensor:
        active = torch.stack([layer.eval_active() for layer in self.layers]).float()
        return active.sum() / self.total
