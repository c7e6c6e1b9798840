"""The run's step budget and the control rates that follow from it.

With Adam on the gates, a gate's log alpha moves by about ``gates_lr`` per step whatever its gradient's scale,
and SGD on the multipliers adds ``dual_lr`` x violation per step: how far the gates and multipliers can travel
in a run is rate x steps. Both rates are therefore given for a budget, ``reference_steps``, and a run of S steps
multiplies them by ``reference_steps / S``: every run travels as far and meets its target at the same share of
its budget (benchmarks/control_matrix.py measures it from 600 to 6,400 steps). The library's default is 0.1 at
1,800 steps; the paper presets give the paper's rates at the paper's budget (factor 1 there, so those runs are
the paper's exactly). ``reference_steps = 0`` uses the rates as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ctrlsparse.hparams import HParams


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``num_train`` examples (the last minibatch may be smaller)."""
    return math.ceil(num_train / batch_size)


@dataclass(frozen=True)
class ControlRates:
    """The learning rates the gates and multipliers really use, and the budget they were derived from."""

    steps: int  # optimizer steps of the whole run
    scale: float  # reference_steps / steps, or 1 without a reference
    gates_lr: float
    dual_lr: float


def control_rates(hparams: HParams, num_train: int) -> ControlRates:
    steps = hparams.epochs * steps_per_epoch(num_train, hparams.batch_size)
    scale = hparams.reference_steps / steps if hparams.reference_steps else 1.0
    return ControlRates(steps, scale, hparams.gates_lr * scale, hparams.dual_lr * scale)
