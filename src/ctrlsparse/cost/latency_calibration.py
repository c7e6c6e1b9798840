"""The latency model checked against the device during training: its share corrected by the measured one.

The latency model (:mod:`ctrlsparse.cost.latency`) adds up layers timed alone and a rest solved from two whole
models; on the final pattern of a run it is off by a few hundredths (mnist5k MLP and LeNet5, digits resnet18 at a
0.5 budget: predicted 0.50, measured by the purge 0.52-0.60). A latency budget is judged on the measured share,
so the run measures it too: at :data:`POINTS` of the epochs its gates move (all of them without ``fix_gates``) it
purges its current eval model, times it against the dense model the way the purge job does (both in their
inference forms, the least of interleaved rounds at the budget's batch, on the CPU at the run's threads) and takes
measured / predicted at that pattern. The model's ``correction``, which the constraint sees
(``ExpectedLatency.share``), is the geometric mean of every such ratio of the run so far: one measurement moves by
0.05-0.1 of the share on a 2-core VM with what else the cache holds (a digits mobilenet_v2 at batch 128: 0.51-0.62
in five purges), and a correction replaced by each lone measurement swung 1.21, 1.39, 1.08 in one run, the last
swing six epochs before its end loosening its equality constraint so far that its gates reopened (density 0.21 ->
0.63 in two epochs). Three points leave the gates the rest of the run to follow the corrected share; the ratios
and the correction are saved with the multipliers (the checkpoint), and ``latency_correction`` is in the summary
and, per epoch, in ``metrics.csv``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

POINTS = (0.5, 0.7, 0.85)  # fractions of the epochs at which the run measures its purged model
SECONDS = 0.5  # interleaved rounds per measurement (at least MIN_ROUNDS)
MIN_ROUNDS = 7


def calibration_epochs(epochs: int) -> set[int]:
    """The epochs (0-based, before which the measurement runs) of a run whose gates move ``epochs`` epochs: none
    under 4."""
    return {round(point * epochs) for point in POINTS} if epochs >= 4 else set()


@torch.no_grad()
def measured_share(model: nn.Module, example: Tensor, batch: int, dense: nn.Module | None = None):
    """(the purged eval model's least time over the dense model's, the dense model's inference form) at ``batch``,
    both as the purge job times them; ``dense``: that form, when already made."""
    from ctrlsparse.latency.measure import interleaved_times, least_share
    from ctrlsparse.purge import deployed

    gated = copy.deepcopy(model).cpu().eval()
    one = example[:1].detach().cpu()
    with torch.random.fork_rng(devices=[]):  # the run's gate noise untouched by the measurement's draws
        torch.manual_seed(0)
        x = torch.randn(batch, *one.shape[1:])
        timing = (x, x[:1])  # the memory format as the purge job chooses it
        if dense is None:
            dense = deployed(gated, one, timing=timing, dense=True).model
        purged = deployed(gated, one, timing=timing).model
        times = interleaved_times({"dense": dense, "purged": purged}, x, seconds=SECONDS, min_rounds=MIN_ROUNDS)
    return least_share(times, "purged", "dense"), dense


def calibrate(latency, model: nn.Module, example: Tensor, batch: int) -> float:
    """Add the measured share of ``model``'s purged eval model over ``latency``'s uncorrected prediction at the
    same (eval) gates to its ``ratios`` (an :class:`~ctrlsparse.cost.latency.ExpectedLatency`, whose
    ``correction`` is their geometric mean); returns the correction."""
    from ctrlsparse.layers import gated_layers

    measured, latency.dense_form = measured_share(model, example, batch, latency.dense_form)
    opened = torch.cat([layer.eval_open() for _, layer in gated_layers(model)]).detach().double().cpu()
    predicted = float(latency.uncorrected_share(opened))
    latency.ratios.append(measured / predicted if predicted > 0 else 1.0)
    return latency.correction
