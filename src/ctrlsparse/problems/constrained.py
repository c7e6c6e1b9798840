"""The paper's method: minimise the loss subject to expected density <= target, via the Lagrangian.

    min_{theta, log alpha} max_{lambda >= 0}  loss + lambda^T (g(log alpha) - eps)

With ``constraint="eq"`` the constraint is g == eps and lambda may take either sign: a layer whose loss alone
would close it below its target is then held at the target. Restarts then act on both sides: a multiplier
whose sign opposes its violation (the density crossed the target) is reset to 0, the paper's rule mirrored.

g is the model's expected density (one constraint) or each gated layer's (one constraint per layer). The
updates are simultaneous (one forward/backward; a primal step, then a projected dual step, both inside
cooper's ``SimultaneousOptimizer``). Dual restarts (paper.md §2), which cooper 1.x no longer ships, are
applied in :meth:`after_step`: a multiplier whose constraint is strictly satisfied is reset to 0.
"""

from __future__ import annotations

import cooper
import torch
from torch import Tensor, nn

from ctrlsparse.hparams import HParams, layer_targets
from ctrlsparse.problems.base import L0Problem

CONSTRAINT_TYPES = {"le": cooper.ConstraintType.INEQUALITY, "eq": cooper.ConstraintType.EQUALITY}


class ConstrainedL0Problem(L0Problem):
    def __init__(self, model: nn.Module, hparams: HParams):
        super().__init__(model, hparams)
        if hparams.target_scope == "model":
            targets = list(hparams.target)
        else:
            targets = layer_targets(hparams.target, self.density.names, hparams.arch)
        device = next(model.parameters()).device
        self.targets = torch.tensor(targets, device=device)
        self.multiplier = cooper.multipliers.DenseMultiplier(num_constraints=len(targets), device=device)
        self.density_constraint = cooper.Constraint(
            constraint_type=CONSTRAINT_TYPES[hparams.constraint],
            formulation_type=cooper.formulations.Lagrangian,
            multiplier=self.multiplier,
        )

    def constraint_value(self) -> Tensor:
        """g: the expected density, shaped like the targets."""
        if self.hparams.target_scope == "model":
            return self.density.model_expected().unsqueeze(0)
        return self.density.layer_expected()

    def compute_cmp_state(self, inputs: Tensor, labels: Tensor) -> cooper.CMPState:
        loss, logits = self.objective(inputs, labels)
        violation = self.constraint_value() - self.targets
        if self.hparams.violation == "relative":
            violation = violation / self.targets
        return cooper.CMPState(
            loss=loss,
            observed_constraints={self.density_constraint: cooper.ConstraintState(violation=violation)},
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
            violation = cmp_state.observed_constraints[self.density_constraint].violation
            if self.hparams.constraint == "eq":  # crossed the target: violation and multiplier of opposite signs
                violation = violation * self.multiplier.weight.detach().sign()
            restart_multipliers_(self.multiplier.weight, violation, self.dual_optimizer)

    @property
    def constraint_names(self) -> list[str]:
        return ["model"] if self.hparams.target_scope == "model" else list(self.density.names)

    def multiplier_values(self) -> Tensor:
        return self.multiplier.weight.detach()

    @torch.no_grad()
    def violations(self) -> Tensor:
        return self.constraint_value() - self.targets


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
