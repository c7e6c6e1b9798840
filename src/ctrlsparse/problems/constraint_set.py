"""The entries of a constrained run's one cooper constraint: stated once, valued from the gates' P(active).

:class:`ConstraintSet` is built once, in the problem's constructor, from the run's hyperparameters (targets and
budgets as :class:`~ctrlsparse.hparams.HParams` parsed them) and an example input (the cost model is traced on it
when a kind needs it). Each entry's expected value is its kind's function (:mod:`ctrlsparse.constraint_kinds`);
the functions of the registered kinds follow the class.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ctrlsparse.constraint_kinds import CONSTRAINT_KINDS, stated
from ctrlsparse.cost import ExpectedCost
from ctrlsparse.density import Density
from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams


class ConstraintSet:
    """A run's constraint entries (:func:`~ctrlsparse.constraint_kinds.stated`): names, targets, kinds.

    ``targets`` are the final targets of every entry, density entries first; :meth:`violation` is the one route
    from the gates to the violation vector, for the step and for the per-epoch report alike.
    """

    def __init__(self, hparams: HParams, density: Density, model: nn.Module, example: Tensor | None):
        self.density, self.model, self.example = density, model, example
        self.batch_size = hparams.latency_budget_batch  # a latency budget's batch
        self.entries = stated(
            hparams.target_scope, hparams.target, hparams.budgets, density.names, hparams.arch, density.kinds
        )
        self.names = [name for entries in self.entries.values() for name in entries]
        device = next(model.parameters()).device
        self.targets = torch.tensor([t for entries in self.entries.values() for t in entries.values()], device=device)
        self.specs = {kind: CONSTRAINT_KINDS.spec(kind) for kind in self.entries}
        self.n_density = sum(len(self.entries[kind]) for kind, spec in self.specs.items() if not spec.budget)
        self.relative = hparams.violation == "relative"
        self._expected = [(kind, CONSTRAINT_KINDS[kind]) for kind in self.entries]
        self._measures: dict[Callable[..., Any], Any] = {}
        costs = {name: t for kind, spec in self.specs.items() if spec.cost for name, t in self.entries[kind].items()}
        self.cost: ExpectedCost | None = self.measure(ExpectedCost) if costs else None
        # Every entry a density or a cost-model quantity: the step takes the whole vector out of the cost model's
        # one quadratic form (ExpectedCost.set_constraints), two products whatever the number of entries.
        self.fused = self.cost is not None and all(spec.cost or not spec.budget for spec in self.specs.values())
        if self.fused:
            rows = density.coefficients(hparams.target_scope)
            self.cost.set_constraints(rows, self.targets[: self.n_density], costs, relative=self.relative)
        self.check_reach()

    def calibrate_latency(self, epoch: int, moving: int) -> None:
        """At the calibration epochs of a run with a latency budget whose gates move ``moving`` epochs, correct the
        latency model by the purged model's measured share (:mod:`ctrlsparse.cost.latency_calibration`)."""
        from ctrlsparse.cost.latency_calibration import calibrate, calibration_epochs

        if "latency" not in self.entries or epoch not in calibration_epochs(moving):
            return
        if not torch.distributed.is_initialized():  # a DDP run keeps its rank-equal model
            calibrate(self.measure(expected_latency_of(self.batch_size)), self.model, self.example, self.batch_size)

    def latency_correction(self) -> float | None:
        return self.measure(expected_latency_of(self.batch_size)).correction if "latency" in self.entries else None

    def latency_state(self) -> dict:
        """A latency budget's measured / predicted ratios and the correction they give ({} without one)."""
        if "latency" not in self.entries:
            return {}
        latency = self.measure(expected_latency_of(self.batch_size))
        return {"latency_correction": latency.correction, "latency_ratios": list(latency.ratios)}

    def load_latency_state(self, state: dict) -> None:
        """The ratios saved by :meth:`latency_state` (a checkpoint of before them: its one correction)."""
        if "latency" in self.entries and "latency_correction" in state:
            ratios = state.get("latency_ratios", [state["latency_correction"]])
            self.measure(expected_latency_of(self.batch_size)).ratios = [float(r) for r in ratios]

    def check_reach(self) -> None:
        """A budget below its value with every gate closed cannot be met, whatever the training: say so (one line,
        :class:`~ctrlsparse.errors.HParamError`) before any training, with the least value to ask for."""
        if not any(spec.budget for spec in self.specs.values()):
            return
        closed = torch.zeros(len(self.density.layer_of_gate), device=self.targets.device)
        with torch.no_grad():
            least = self.values(closed).tolist()
        for name, target, floor in zip(self.names, self.targets.tolist(), least, strict=True):
            kind = next(kind for kind, entries in self.entries.items() if name in entries)
            if self.specs[kind].budget and target < floor:
                quantity = f"latency at batch {self.batch_size}" if kind == "latency" else kind  # where time goes
                raise HParamError(
                    "budget",
                    f"{kind}={target:g} is below the least this model reaches, {floor:.3f} of the dense model's "
                    f"{quantity} with every gate closed; ask for {math.ceil(floor * 1000) / 1000:g} or more",
                )

    def __len__(self) -> int:
        return len(self.names)

    def measure(self, build: Callable[[nn.Module, Tensor], Any]) -> Any:
        """What ``build(model, example)`` makes (a cost model), made once per run and shared by the kinds."""
        if build not in self._measures:
            if self.example is None:
                raise ValueError(f"the constraints {', '.join(self.names)} need an example input to trace the model")
            self._measures[build] = build(self.model, self.example)
        return self._measures[build]

    def values(self, p: Tensor) -> Tensor:
        """Every entry's expected value at the gates' P(active) ``p`` (differentiable), in ``names`` order."""
        return torch.cat([expected(self, kind, p) for kind, expected in self._expected])

    def violation(self, p: Tensor, step: bool = False) -> Tensor:
        """Expected value - target of every entry at ``p``: what each epoch reports. ``step``: what the step's
        multipliers see, divided by the target when ``violation`` is relative; in a fused set, out of the cost
        model's one form (the same numbers up to float rounding)."""
        if step and self.fused:
            return self.cost.violations(p)
        violation = self.values(p) - self.targets
        return violation / self.targets if step and self.relative else violation

    def tie_weights(self) -> Tensor | None:
        """Each gate's weight in the polarization tie-breaker of a run with budgets: the mean over the
        constrained quantities of its share of what the gates decide (the density's: its share of the sparsifiable
        parameters; a budget's: d value / d P(active) at all-open, normalised to sum to 1), float64 on the CPU.
        None without a budget (the density's own weights)."""
        budgets = [(kind, expected) for kind, expected in self._expected if self.specs[kind].budget]
        if not budgets:
            return None
        rows = [self.density.gate_shares.double().cpu()] if self.n_density else []
        for kind, expected in budgets:
            ones = torch.ones(len(self.density.layer_of_gate), dtype=torch.float64, requires_grad=True)
            (grad,) = torch.autograd.grad(expected(self, kind, ones).sum(), ones)
            rows.append(grad / grad.sum() if grad.sum() > 0 else grad)
        return torch.stack(rows).mean(0)


# --- the registered kinds' expected values: function(constraint_set, kind, p) -> a vector, one per entry ---


def model_density(constraints: ConstraintSet, kind: str, p: Tensor) -> Tensor:
    return constraints.density.model_expected(p).unsqueeze(0)


def layer_density(constraints: ConstraintSet, kind: str, p: Tensor) -> Tensor:
    return constraints.density.layer_expected(p)


def cost_share(constraints: ConstraintSet, kind: str, p: Tensor) -> Tensor:
    """A quantity of the cost model (macs, params) as a share of the dense model's."""
    return constraints.measure(ExpectedCost).share(kind, p)


def latency_share(constraints: ConstraintSet, kind: str, p: Tensor) -> Tensor:
    """The expected latency as a share of the dense model's, at the run's batch size, from the latency table of
    this architecture measured on the CPU (the device the purge judges it on; cached, :mod:`ctrlsparse.cost.latency`)."""
    return constraints.measure(expected_latency_of(constraints.batch_size)).share(p).unsqueeze(0)


@functools.cache
def expected_latency_of(batch: int) -> Callable[[nn.Module, Tensor], Any]:
    """The builder of a model's :class:`~ctrlsparse.cost.latency.ExpectedLatency` at ``batch`` (one callable per
    batch, so that :meth:`ConstraintSet.measure` builds it once)."""

    def build(model: nn.Module, example: Tensor) -> Any:
        from ctrlsparse.cost.latency import ExpectedLatency, latency_table

        cpu = torch.device("cpu")
        table = latency_table(copy.deepcopy(model).cpu(), example.cpu(), batch, cpu)
        return ExpectedLatency(model, example, table)

    return build
