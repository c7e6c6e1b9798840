"""BatchNorm statistics re-estimated under the eval gates (``--recalibrate-norms N``).

A gated conv's BatchNorm (the default layout, ``BN(conv(z x W) x)``) keeps running statistics of a channel scaled by
each step's *sampled* gate z, fractional on many steps (``L0BatchNorm2d`` keeps the steps where z = 0 out); the
batch statistics normalise that scale away in training, the running ones do not at eval, where the evaluation and
the purge scale the channel by z's median instead. Re-estimating the statistics over a few training batches with the
eval gates (each BatchNorm's cumulative average, then its own momentum again) is what pruning practice does after a
mask changes; the weights, the gates and the training are not touched: the batches come from a generator of their
own (the run's seed), BatchNorm buffers are all that change."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def recalibrate_norms(model: nn.Module, forward: Callable[[Tensor], Tensor], batches: Iterable[Tensor]) -> int:
    """Re-estimate the running statistics of ``model``'s BatchNorms from ``forward`` (``model``'s eval forward) over
    ``batches``, every other module in eval mode; ``model`` is left in eval mode. Returns the batches seen."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    model.eval()
    if not norms:
        return 0
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches, not an exponential one
        norm.train()
    seen = 0
    try:
        for inputs in batches:
            forward(inputs)
            seen += 1
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
            norm.eval()
    return seen


def training_inputs(data, batch_size: int, seed: int, count: int):
    """The inputs of the first ``count`` training batches in the order a generator seeded with ``seed`` draws them
    (the run's own generators untouched)."""
    for number, (inputs, _) in enumerate(data.train_batches(batch_size, torch.Generator().manual_seed(seed))):
        if number == count:
            return
        yield inputs
