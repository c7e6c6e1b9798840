"""Parameters and multiply-accumulates of a model, counted by torch's own FLOP counter.

MACs = FLOPs / 2 of ``torch.utils.flop_counter.FlopCounterMode`` on a batch of one: convolutions and matrix
products (the layers that carry the weights); BatchNorm, activations, pooling and the purge's index ops are not
counted, as in ptflops' convention for the paper's tables up to those small terms. Parameters are every
parameter but the gates' ``log_alpha`` (BatchNorm running statistics are buffers, not parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.endswith("log_alpha"))


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of one example (the first of the batch), in eval mode."""
    training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example[:1])
    finally:
        model.train(training)
    return counter.get_total_flops() // 2


def count(model: nn.Module, example: torch.Tensor) -> Counts:
    return Counts(count_params(model), count_macs(model, example))


def size_report(dense: Counts, purged: Counts) -> dict[str, float | int]:
    """The summary's size keys: the purged model's params and MACs, and both as % of the dense model."""
    return {
        "params": purged.params,
        "macs": purged.macs,
        "params_pct": 100.0 * purged.params / dense.params,
        "macs_pct": 100.0 * purged.macs / dense.macs,
        "dense_params": dense.params,
        "dense_macs": dense.macs,
    }
