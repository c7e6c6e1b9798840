"""The latency model checked against the device during training: its share corrected by the measured one.

The latency model (:mod:`ctrlsparse.cost.latency`) adds up layers timed alone and a rest solved from two whole
models; on the final pattern of a run it is off by a few hundredths (mnist5k MLP and LeNet5, digits resnet18 at a
0.5 budget: predicted 0.50, measured by the purge 0.52-0.60). A latency budget is judged on the measured share,
so the run measures it too: at :data:`POINTS` of its epochs it purges its current eval model, times it against
the dense model the way the purge job does (both in their inference forms, the least of interleaved rounds at
the training batch, on the CPU at the run's threads) and sets the model's ``correction`` to measured / predicted
at that pattern, which the constraint then sees (``ExpectedLatency.share``). Three points leave the gates the rest
of the run to follow the corrected share; the last correction is saved with the multipliers (the checkpoint), and
``latency_correction`` is in the summary.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

POINTS = (0.5, 0.7, 0.85)  # fractions of the epochs at which the run measures its purged model
SECONDS = 0.5  # interleaved rounds per measurement (at least MIN_ROUNDS)
MIN_ROUNDS = 7


def calibration_epochs(epochs: int) -> set[int]:
    """The epochs (0-based, before which the measurement runs) of a run of ``epochs``: none under 4 epochs."""
    return {round(point * epochs) for point in POINTS} if epochs >= 4 else set()


@torch.no_grad()
def measured_share(model: nn.Module, example: Tensor, batch: int, dense: nn.Module | None = None):
    """(the purged eval model's least time over the dense model's, the dense model's inference form) at ``batch``,
    both as the purge job times them; ``dense``: that form, when already made."""
    from ctrlsparse.latency.measure import interleaved_times, least_share
    from ctrlsparse.purge import deployed

    gated = copy.deepcopy(model).cpu().eval()
    one = example[:1].detach().cpu()
    x = torch.randn(batch, *one.shape[1:], generator=torch.Generator().manual_seed(0))  # the run's RNG untouched
    timing = (x, x[:1])  # the memory format as the purge job chooses it
    if dense is None:
        dense = deployed(gated, one, timing=timing, dense=True).model
    purged = deployed(gated, one, timing=timing).model
    times = interleaved_times({"dense": dense, "purged": purged}, x, seconds=SECONDS, min_rounds=MIN_ROUNDS)
    return least_share(times, "purged", "dense"), dense


def calibrate(latency, model: nn.Module, example: Tensor, batch: int) -> float:
    """Set ``latency.correction`` (an :class:`~ctrlsparse.cost.latency.ExpectedLatency`) to the measured share
    of ``model``'s purged eval model over the model's uncorrected prediction at the same (eval) gates; returns it."""
    from ctrlsparse.layers import gated_layers

    measured, latency.dense_form = measured_share(model, example, batch, latency.dense_form)
    opened = torch.cat([layer.eval_open() for _, layer in gated_layers(model)]).detach().double().cpu()
    predicted = float(latency.uncorrected_share(opened))
    latency.correction = measured / predicted if predicted > 0 else 1.0
    return latency.correction
