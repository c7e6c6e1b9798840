"""The objective shared by every method: cross-entropy plus the expected-L2 weight decay."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cooper
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlsparse import gates as hc
from ctrlsparse.density import Density
from ctrlsparse.gates import clamp_log_alphas_, keep_a_gate_open_
from ctrlsparse.hparams import HParams
from ctrlsparse.layers import GatedLayer
from ctrlsparse.problems.warm_start import load_dense_weights
from ctrlsparse.registry import METHODS

if TYPE_CHECKING:
    from ctrlsparse.cost import ExpectedCost


def fixed_from(hparams: HParams) -> int:
    """The first epoch with fixed gates (``fix_gates``); ``hparams.epochs`` when they are never fixed."""
    return hparams.epochs - round(hparams.fix_gates * hparams.epochs)


class L0Problem(cooper.ConstrainedMinimizationProblem):
    """Minimise E_z[CE(f(x; theta * z), y)] + wd * expected L2; subclasses add the density terms.

    Expected L2 (paper.md §1): wd * [sum over gated layers of 1/2 sum_g P(z_g != 0) ||theta_g||^2
    + 1/2 ||W||^2 over the dense Linear/Conv/BatchNorm parameters], with P detached when
    ``l2_detach_gates`` (all paper runs), so weight decay never pushes the gates.
    """

    warm_starts = True  # given --pretrained, start from that dense run's weights (magnitude loads them itself)
    cost: ExpectedCost | None = None  # the run's cost model, where its constraints have one (MAC / param budgets)

    def latency_correction(self) -> float | None:
        """A latency budget's measured / predicted share (cost/latency_calibration.py); None without one."""
        return None

    def __init__(self, model: nn.Module, hparams: HParams, example: Tensor | None = None):
        """``example``: an input batch of the data's shape (zeros will do), on which a problem whose constraints
        need the traced model (the cost model of a budget) traces it, once, here."""
        super().__init__()
        self.model = model
        self.hparams = hparams
        self.uses_gates = METHODS.spec(hparams.method).gates  # the dense baseline trains no gates
        self.density = Density(model)
        self.log_alpha_min = math.log(hparams.alpha_min)  # the clamp runs after every step
        if self.uses_gates and not len(self.density):
            raise ValueError(f"method {hparams.method!r} needs a gated model, but arch {hparams.arch!r} has no gates")
        if hparams.pretrained and self.uses_gates and self.warm_starts:
            load_dense_weights(model, hparams)
        self.teacher: nn.Module | None = None  # the dense run's model, for --distill (training.setup sets it)
        dense_types = (nn.Linear, nn.Conv2d, nn.BatchNorm2d)
        self._dense_params = [
            param
            for module in model.modules()
            if isinstance(module, dense_types) and not isinstance(module, GatedLayer)
            for param in module.parameters(recurse=False)
        ]

    # --- the objective ---
    def expected_l2(self) -> Tensor:
        """All layers' terms from one multi-tensor norm: each gated layer contributes its parameters with the
        gates set to sqrt(P) (``GatedLayer.l2_tensors``), so squared norms give P-weighted group norms; a
        per-parameter sum of squares would be six autograd ops per tensor (hundreds per step in a WRN)."""
        tensors = list(self._dense_params)
        if self.density.layers:
            p = hc.prob_active(torch.cat(self.density.log_alphas))
            if self.hparams.l2_detach_gates:
                p = p.detach()
            roots = p.sqrt().split(self.density.counts)
            tensors += [
                t for layer, root in zip(self.density.layers, roots, strict=True) for t in layer.l2_tensors(root)
            ]
        return 0.5 * torch.stack(torch._foreach_norm(tensors)).pow(2).sum()

    def objective(self, inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, logits) for one minibatch; the loss carries no density term."""
        if self.uses_gates and self.model.training:
            self.density.sample_gates_()
        logits = self.model(inputs)
        loss = F.cross_entropy(logits, labels)
        if self.teacher is not None:  # distillation from the dense run (a warm start's --distill)
            weight, temperature = self.hparams.distill, self.hparams.distill_temperature
            with torch.no_grad():
                target = F.log_softmax(self.teacher(inputs) / temperature, dim=1)
            student = F.log_softmax(logits / temperature, dim=1)
            kl = F.kl_div(student, target, reduction="batchmean", log_target=True)
            loss = (1.0 - weight) * loss + weight * temperature**2 * kl
        if self.hparams.weight_decay > 0:
            loss = loss + self.hparams.weight_decay * self.expected_l2()
        return loss, logits

    def compute_cmp_state(self, inputs: Tensor, labels: Tensor) -> cooper.CMPState:
        loss, logits = self.objective(inputs, labels)
        return cooper.CMPState(loss=loss, misc={"objective": loss.detach(), "logits": logits.detach()})

    # --- optimisation ---
    def build_optimizer(
        self, primal: torch.optim.Optimizer, dual_lr: float | None = None
    ) -> cooper.optim.CooperOptimizer:
        """The cooper optimizer over ``primal`` (and, with constraints, the multipliers at ``dual_lr``, the
        budget-scaled rate; None: ``hparams.dual_lr``)."""
        return cooper.optim.UnconstrainedOptimizer(cmp=self, primal_optimizers=primal)

    def before_epoch(self, epoch: int) -> None:
        """Runs before every epoch (``epoch`` counts from 0). With ``fix_gates`` F, the last F of the epochs train
        the weights of the eval model alone: every gate is its median (the eval gate, what the purge keeps) in
        training too and log alpha stops moving (its learning rate is 0 then, ``set_learning_rates``), so the
        architecture the run returns is fine-tuned as it is."""
        fixed = epoch >= fixed_from(self.hparams)
        for layer in self.density.layers:
            layer.fixed = fixed

    def after_step(self, cmp_state: cooper.CMPState) -> None:
        """Runs after every optimizer step: keep log alpha inside its clamp range, and a gate of every gate set
        open (``keep_a_gate_open``)."""
        clamp_log_alphas_(self.density.log_alphas, self.log_alpha_min)
        if self.hparams.keep_a_gate_open:
            keep_a_gate_open_(self.density.log_alphas, self.density.layer_of_gate)

    # --- reporting ---
    @property
    def constraint_names(self) -> list[str]:
        """One name per constraint (``model`` or the gated layers' names); empty without constraints."""
        return []

    def multiplier_values(self) -> Tensor | None:
        return None

    @torch.no_grad()
    def violations(self) -> Tensor | None:
        """Current constraint violations g - eps (None without constraints)."""
        return None
