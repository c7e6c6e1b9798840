"""The paper's method: minimise the loss subject to expected density <= target, via the Lagrangian.

    min_{theta, log alpha} max_{lambda >= 0}  loss + lambda^T (g(log alpha) - eps)

With ``constraint="eq"`` the constraint is g == eps and lambda may take either sign: a layer whose loss alone
would close it below its target is then held at the target. Restarts then act on both sides: a multiplier
whose sign opposes its violation (the density crossed the target) is reset to 0, the paper's rule mirrored.

``formulation`` augmented_lagrangian uses cooper 1.0.1's ``AugmentedLagrangian``: the primal step sees the
Lagrangian plus a quadratic penalty of the violation v with a constant coefficient c (``penalty_coefficient``),
lambda^T v + c/2 ||v||^2 under ``eq`` and 1/(2c) (||relu(lambda + c v)||^2 - ||lambda||^2) under ``le``
(Nocedal & Wright 17.64-17.65); the multipliers' step is the plain Lagrangian's (dual_lr x v). The coefficient
is saved in the checkpoint with the multipliers (cooper's CMP state).

g is the model's expected density (one constraint) or each gated layer's (one constraint per layer). The
updates are simultaneous (one forward/backward; a primal step, then a projected dual step, both inside
cooper's ``SimultaneousOptimizer``). Dual restarts (paper.md §2), which cooper 1.x no longer ships, are
applied in :meth:`after_step`: a multiplier whose constraint is strictly satisfied is reset to 0.

The expected density cannot tell 20 gates at P(active) 0.7 from 6 closed and 14 open, and the loss cannot
either when the gates' inputs carry nothing (digits' border pixels): left alone, such gates meet a high target
in expectation while all of them stay open at eval (eval density 0.94 for a 0.9 target). ``gates_polarization``
adds kappa x mean P(1 - P) to the loss, which breaks the tie towards closed-or-open gates (0 for the paper's
presets).

Budgets (``--budget macs=0.3,params=0.25``): each kind is one more constraint entry, expected share of the dense
model's MACs / parameters (:class:`ctrlsparse.cost.ExpectedCost`) - budget, with its own multiplier, the same
eq/le choice and the same restarts; ``--target-scope none`` drops the density constraint. What the entries are,
their targets and expected values, is the constraint kinds' (:mod:`ctrlsparse.constraint_kinds`), stated once in
the constructor (:class:`~ctrlsparse.problems.constraint_set.ConstraintSet`, which traces the cost model on the
example input). All of them are entries of one cooper constraint (one multiplier vector), which is cheaper per
step than one cooper constraint per kind and changes nothing else: the multipliers, their updates and restarts
are per entry. In a budget run the whole violation vector, density entries included (a density is linear in the
per-layer sums of P), is the cost model's one quadratic form (:meth:`ExpectedCost.set_constraints`); the
tie-breaker then weighs each gate by its cost (:meth:`ConstraintSet.tie_weights`).
"""

from __future__ import annotations

import cooper
import torch
from torch import Tensor, nn

from ctrlsparse.hparams import HParams
from ctrlsparse.problems.base import L0Problem, fixed_from
from ctrlsparse.problems.constraint_set import ConstraintSet
from ctrlsparse.problems.rounding import round_to_targets_

CONSTRAINT_TYPES = {"le": cooper.ConstraintType.INEQUALITY, "eq": cooper.ConstraintType.EQUALITY}
FORMULATIONS = {
    "lagrangian": cooper.formulations.Lagrangian,
    "augmented_lagrangian": cooper.formulations.AugmentedLagrangian,
}


class ConstrainedL0Problem(L0Problem):
    def __init__(self, model: nn.Module, hparams: HParams, example: Tensor | None = None):
        super().__init__(model, hparams, example)
        self.constraint_set = ConstraintSet(hparams, self.density, model, example)  # the cost model traced here
        self.cost = self.constraint_set.cost
        self.device = self.constraint_set.targets.device
        # The tie-breaker of a budget run weighs each gate by what it costs in every constrained quantity (the mean
        # of the density's and each budget's per-gate shares): a gate left half open by the constraint then settles
        # by its price in the quantity asked for, not by its parameter count (a digits-CNN conv1 channel is 0.03%
        # of the sparsifiable parameters and ~2% of the MACs). None: the parameter shares.
        weights = self.constraint_set.tie_weights()
        self.tie_weights = None if weights is None else weights.to(self.device, torch.float32)
        self.current: Tensor | None = None  # this epoch's targets while they are annealed (before_epoch), else None
        if len(self.constraint_set):
            self._register(len(self.constraint_set))

    def _register(self, n: int) -> None:
        """The one cooper constraint: ``n`` entries (the density target(s), then the budget kinds), one multiplier
        each. One constraint object, not one per kind: every cooper constraint costs a multiplier call, two inner
        products and a restart pass per step (two budgets as two constraints: +1.2 ms a step on the digits MLP's
        5.4 ms; as entries, with the cost as one quadratic form, +0.3 ms). Its name
        stays ``density_constraint`` when there is a density target (the checkpoints' key since the first runs)."""
        name = "density_constraint" if len(self.targets) else "budget_constraint"
        multiplier = cooper.multipliers.DenseMultiplier(num_constraints=n, device=self.device)
        formulation = FORMULATIONS[self.hparams.formulation]
        coefficient = torch.full((n,), self.hparams.penalty_coefficient, device=self.device)
        setattr(  # cooper registers a constraint by its attribute name
            self,
            name,
            cooper.Constraint(
                constraint_type=CONSTRAINT_TYPES[self.hparams.constraint],
                formulation_type=formulation,
                multiplier=multiplier,
                penalty_coefficient=cooper.penalty_coefficients.DensePenaltyCoefficient(coefficient)
                if formulation.expects_penalty_coefficient
                else None,
            ),
        )
        self.multiplier = multiplier

    @property
    def constraint(self) -> cooper.Constraint | None:
        """The one constraint (None: nothing to constrain)."""
        return next(iter(self._constraints.values()), None)

    @property
    def targets(self) -> Tensor:
        """The density targets: one (model-wise), one per gated layer (layer-wise) or none (budgets alone)."""
        return self.constraint_set.targets[: self.constraint_set.n_density]

    def before_epoch(self, epoch: int) -> None:
        """Before each epoch: the targets and budgets the multipliers see this epoch. With ``target_anneal`` F
        they move from 1 (the dense model) to their values over the first F of the epochs, cubically (gradual
        pruning's schedule: fast while much is left to remove, gently at the end); after that, and with F 0,
        they are the values themselves. A warm start then stays near the function it starts from."""
        super().before_epoch(epoch)
        self.constraint_set.calibrate_latency(epoch, fixed_from(self.hparams))  # a latency budget's measured share
        if epoch == fixed_from(self.hparams) < self.hparams.epochs:  # the gates stop here: round them to the targets
            round_to_targets_(self)
        final = self.constraint_set.targets
        span = self.hparams.target_anneal * self.hparams.epochs
        left = max(0.0, 1.0 - epoch / span) if span > 0 else 0.0
        self.current = None if left == 0.0 else final + (1.0 - final) * left**3

    def _annealed(self, violation: Tensor) -> Tensor:
        """``violation`` against the final targets B turned into one against this epoch's targets t:
        relative (v - B) / B -> (v - t) / t; absolute v - B -> v - t."""
        if self.current is None:
            return violation
        final = self.constraint_set.targets
        if self.hparams.violation == "relative":
            return violation * (final / self.current) + (final - self.current) / self.current
        return violation + (final - self.current)

    def violation(self, p: Tensor | None = None, step: bool = False) -> Tensor:
        """Expected value - target of every constraint entry (:attr:`constraint_names` order) at the gates'
        P(active) ``p`` (None: the gates' own), what each epoch reports; ``step``: what the step's multipliers see,
        relative to the target when ``violation`` is relative and against this epoch's targets while they are
        annealed (:meth:`ConstraintSet.violation`)."""
        p = self.density.prob_active() if p is None else p
        if not step:
            return self.constraint_set.violation(p)
        return self._annealed(self.constraint_set.violation(p, step=True))

    def _observed(self, p: Tensor | None) -> dict[cooper.Constraint, Tensor]:
        """The constraint's violation vector as the step sees it (density entries, then budget entries)."""
        return {} if self.constraint is None else {self.constraint: self.violation(p, step=True)}

    def compute_cmp_state(self, inputs: Tensor, labels: Tensor) -> cooper.CMPState:
        loss, logits = self.objective(inputs, labels)
        p = self.density.prob_active() if len(self.density) else None  # once for every term below
        if self.hparams.gates_polarization and p is not None:
            # The tie-breaker between gates the loss is indifferent to (misc's objective stays the loss).
            loss = loss + self.hparams.gates_polarization * self.density.polarization(p, self.tie_weights)
        return cooper.CMPState(
            loss=loss,
            observed_constraints={c: cooper.ConstraintState(violation=v) for c, v in self._observed(p).items()},
            misc={"objective": loss.detach(), "logits": logits.detach()},
        )

    def build_optimizer(
        self, primal: torch.optim.Optimizer, dual_lr: float | None = None
    ) -> cooper.optim.CooperOptimizer:
        hp = self.hparams
        lr = hp.dual_lr if dual_lr is None else dual_lr
        if hp.dual_optimizer == "nupi":
            dual = cooper.optim.nuPI(self.dual_parameters(), lr=lr, Kp=hp.nupi_kp, Ki=hp.nupi_ki, maximize=True)
        else:
            dual = torch.optim.SGD(self.dual_parameters(), lr=lr, maximize=True)
        self.dual_optimizer = dual
        return cooper.optim.SimultaneousOptimizer(cmp=self, primal_optimizers=primal, dual_optimizers=dual)

    def after_step(self, cmp_state: cooper.CMPState) -> None:
        super().after_step(cmp_state)
        if self.hparams.dual_restarts:
            for constraint, state in cmp_state.observed_constraints.items():
                weight, violation = constraint.multiplier.weight, state.violation
                if self.hparams.constraint == "eq":  # crossed the target: violation and multiplier of opposite signs
                    violation = violation * weight.detach().sign()
                restart_multipliers_(weight, violation, self.dual_optimizer)

    def latency_correction(self) -> float | None:
        return self.constraint_set.latency_correction()

    def state_dict(self) -> dict:
        """cooper's (the multipliers) and a latency budget's correction (measured / predicted shares)."""
        return {**super().state_dict(), **self.constraint_set.latency_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.constraint_set.load_latency_state(state_dict)

    @property
    def constraint_names(self) -> list[str]:
        """``model`` or the gated layers' names (none with ``target_scope`` none), then the budget kinds."""
        return list(self.constraint_set.names)

    def multiplier_values(self) -> Tensor:
        return self.targets if self.constraint is None else self.constraint.multiplier.weight.detach()

    @torch.no_grad()
    def violations(self) -> Tensor:
        return self.violation()


@torch.no_grad()
def restart_multipliers_(weight: Tensor, violation: Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Dual restart: where the constraint is strictly satisfied (violation < 0), set the multiplier and its
    gradient to 0, and zero any per-entry optimizer state (nuPI keeps one); elsewhere change nothing.
    Runs on the device without a host sync."""
    keep = violation.detach() >= 0
    weight.mul_(keep)
    if weight.grad is not None:
        weight.grad.mul_(keep)
    if optimizer is not None:
        for value in optimizer.state.get(weight, {}).values():
            if isinstance(value, Tensor) and value.shape == weight.shape:
                value.mul_(keep)
