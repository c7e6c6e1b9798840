"""The architecture a run keeps when its gates are fixed (``fix_gates``): the eval gates rounded to the targets.

A run's multipliers hold the *expected* density and cost on target; what the run returns is the eval model (every
gate with a non-zero median kept whole by the purge), which can sit a point or more away from it when some gates
are still between open and closed. Once the gates stop moving nothing would correct that, so at the first fixed
epoch the eval pattern is chosen again: the gates ranked by log alpha (the order in which the eval gates open),
each gate set's largest first when a gate of every set is kept open, and the longest prefix whose exact cost
(the cost model at 0/1 gates is the purged model's) meets every model-wise target and budget; under ``eq`` the
next gate as well when that lands closer. Gates that change side are set fully open or closed; the others keep
their log alpha (and their fractional eval gates).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctrlsparse import gates as hc

# The log alpha of a gate opened by the rounding: eval gate 1 (sigmoid(3) x 1.2 - 0.1 > 1).
OPENED_LOG_ALPHA = 3.0


def ranking(flat: Tensor, layer_of_gate: Tensor, keep_a_gate_open: bool) -> Tensor:
    """Gate indices in the order they open: by log alpha, descending; each set's largest first if kept open."""
    order = torch.argsort(flat, descending=True, stable=True)
    if not keep_a_gate_open:
        return order
    sets = layer_of_gate.to(flat.device)[order]
    first = torch.ones_like(order, dtype=torch.bool)
    seen = torch.zeros(int(sets.max()) + 1 if len(sets) else 0, dtype=torch.bool, device=flat.device)
    for position, unit in enumerate(sets.tolist()):  # once per run: a Python loop over the gates is fine
        first[position] = not seen[unit]
        seen[unit] = True
    return torch.cat([order[first], order[~first]])


@torch.no_grad()
def round_to_targets_(problem) -> bool:
    """Rechoose the eval gates of ``problem`` (a constrained problem with model-wise targets or budgets) as above;
    returns whether any gate changed side. Layer-wise targets are left as they are."""
    hparams = problem.hparams
    if problem.constraint is None or hparams.target_scope == "layer":
        return False
    flat = torch.cat([a.detach() for a in problem.density.log_alphas])
    order = ranking(flat, problem.density.layer_of_gate, hparams.keep_a_gate_open)
    floor = len(problem.density.layers) if hparams.keep_a_gate_open else 0

    def pattern(k: int) -> Tensor:
        p = torch.zeros_like(flat)
        p[order[:k]] = 1.0
        return p

    def violation(k: int) -> Tensor:  # value at the 0/1 pattern minus target, every model-wise entry (absolute)
        return problem.violation(pattern(k))

    low, high = floor, len(flat)  # the longest prefix within every target: bisection (cost grows with k)
    if bool((violation(high) <= 0).all()):
        low = high
    else:
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if bool((violation(middle) <= 0).all()) else (low, middle)
    chosen = low
    closer = hparams.constraint == "eq" and chosen < len(flat)
    if closer and violation(chosen + 1).abs().max() < violation(chosen).abs().max():
        chosen += 1
    keep = pattern(chosen).bool()
    now = hc.median_gates(flat) > 0
    opened, closed = keep & ~now, ~keep & now
    if not bool((opened | closed).any()):
        return False
    new = torch.where(opened, torch.clamp(flat, min=OPENED_LOG_ALPHA), flat)
    new = torch.where(closed, problem.log_alpha_min, new)  # the clamp's floor: eval gate 0
    torch._foreach_copy_(problem.density.log_alphas, list(new.split(problem.density.counts)))
    return True
