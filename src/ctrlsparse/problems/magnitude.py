"""Magnitude pruning (Li et al. 2017; paper.md §3), the baseline the paper ran on ImageNet.

Start from the trained dense run of the same data, architecture and seed (``--pretrained RUN_DIR``); in every
gated layer keep the groups with the largest L1 norm at the layer's density ε (``--target``, one for all layers
or one per layer): a conv's output filters, a Linear's input neurons (our gating layout); then fine-tune.

The paper sets log α = ±5 and fine-tunes the purged model. Here the gates are fixed at log α = ±20 and frozen:
at that size every hard-concrete sample is exactly 1 or 0 (the noise logit is at most ±13.8), so fine-tuning the
gated model is fine-tuning the purged one (closed groups get zero gradient, the masked BatchNorm ignores
closed channels), and ``ctrlsparse purge`` turns the result into the small model like any other run.
"""

from __future__ import annotations

import cooper
import torch
from torch import Tensor, nn

from ctrlsparse.density_targets import layer_targets
from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.layers import GatedLayer, L0Conv2d
from ctrlsparse.problems.base import L0Problem
from ctrlsparse.problems.warm_start import load_dense_weights

FIXED_LOG_ALPHA = 20.0  # |log alpha| at which every sample is exactly 0 or 1 (needs > 13.8 + 1.6)


def group_l1_norms(layer: GatedLayer) -> Tensor:
    """L1 norm of each gate's group: a conv's output filter, a Linear's input column."""
    weight = layer.weight.detach().abs()
    return weight.flatten(1).sum(1) if isinstance(layer, L0Conv2d) else weight.sum(0)


def keep_largest(norms: Tensor, density: float) -> Tensor:
    """Boolean mask of the round(density * n) groups (at least one) with the largest norms."""
    count = max(1, round(density * len(norms)))
    keep = torch.zeros_like(norms, dtype=torch.bool)
    keep[torch.topk(norms, count).indices] = True
    return keep


class MagnitudePruningProblem(L0Problem):
    warm_starts = False  # it loads the dense run's weights itself, after checking its targets

    def __init__(self, model: nn.Module, hparams: HParams, example: Tensor | None = None):
        super().__init__(model, hparams, example)
        if hparams.target_scope != "layer":
            raise HParamError("target_scope", "magnitude pruning keeps a density per gated layer: give 'layer'")
        shared = [
            name
            for name, layer in zip(self.density.names, self.density.layers, strict=True)
            if not isinstance(layer, GatedLayer)
        ]
        if shared:
            raise HParamError(
                "method",
                f"magnitude pruning ranks each gated layer's own filters; {shared[0]} is a gate group shared by "
                f"coupled channels (arch {hparams.arch!r}): use --method constrained with a --budget or --target",
            )
        targets = layer_targets(hparams.target, self.density.names, hparams.arch, kinds=self.density.kinds)
        load_dense_weights(model, hparams)
        with torch.no_grad():
            for layer, target in zip(self.density.layers, targets, strict=True):
                keep = keep_largest(group_l1_norms(layer), target)
                layer.log_alpha.copy_(torch.where(keep, FIXED_LOG_ALPHA, -FIXED_LOG_ALPHA))
                layer.log_alpha.requires_grad_(False)  # frozen: the optimizer skips it

    def after_step(self, cmp_state: cooper.CMPState) -> None:
        """Nothing: the gates are fixed (and must not be clamped back into the trainable range)."""
