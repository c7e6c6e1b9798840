"""The run's step budget and the control rates that follow from it.

With Adam on the gates, a gate's log alpha moves by about ``gates_lr`` per step whatever its gradient's scale,
and SGD on the multipliers adds ``dual_lr`` x violation per step: how far the gates and multipliers can travel
in a run is rate x steps. The library's defaults (gates lr 0.1, dual lr 0.1) travel that far in a few hundred
steps, so a run of any longer budget meets its target early (benchmarks/control_matrix.py measures it). The
paper's rates are far slower (MNIST: 7e-4 for 93,800 steps) and were set for the paper's budget: the paper
presets give it as ``reference_steps``, and a run of another budget multiplies both rates by
``reference_steps / steps``, so that they travel as far as in the paper (factor 1 at the paper's budget).
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
