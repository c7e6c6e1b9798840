"""The penalized baseline: loss + lambda * density (model-wise) or + lambda * sum_l density_l (layer-wise).

lambda multiplies the *normalised* density (paper.md §3), so its scale differs from Louizos's lambda / N.
"""

from __future__ import annotations

import cooper
from torch import Tensor

from ctrlsparse.problems.base import L0Problem


class PenalizedL0Problem(L0Problem):
    def penalty_term(self) -> Tensor:
        if self.hparams.target_scope == "layer":
            return self.density.layer_expected().sum()
        return self.density.model_expected()

    def compute_cmp_state(self, inputs: Tensor, labels: Tensor) -> cooper.CMPState:
        objective, logits = self.objective(inputs, labels)
        loss = objective + self.hparams.penalty * self.penalty_term()
        return cooper.CMPState(loss=loss, misc={"objective": objective.detach(), "logits": logits.detach()})
