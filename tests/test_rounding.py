"""The eval gates rounded to the targets when the gates are fixed (fix_gates): the purged model meets the budget
with the longest prefix of the gates' ranking, a gate of every set kept open."""

from __future__ import annotations

import pytest
import torch

from ctrlsparse import gates as hc
from ctrlsparse.hparams import HParams
from ctrlsparse.problems.rounding import ranking, round_to_targets_
from ctrlsparse.purge import count, purge
from ctrlsparse.training.setup import build_run


def purged_share(run) -> float:
    """The MAC share of what the user receives: the purged model's MACs over the dense model's (both counted)."""
    model = run.problem.model
    example = torch.zeros(1, *run.data.input_shape)
    model.eval()
    return count(purge(model, example), example).macs / run.problem.cost.dense_macs


def ranked(run) -> torch.Tensor:
    return torch.cat([a.detach() for a in run.problem.density.log_alphas])


@pytest.mark.parametrize(("arch", "budget", "constraint"), [("cnn", 0.1, "le"), ("cnn", 0.3, "eq"), ("mlp", 0.2, "le")])
def test_the_purged_model_meets_the_budget_after_rounding(arch, budget, constraint):
    hparams = HParams.resolve(
        arch=arch,
        budget=f"macs={budget}",
        target_scope="none",
        constraint=constraint,
        fix_gates=0.5,
        epochs=2,
        device="cpu",
    )
    run = build_run(hparams)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a spread of gates: open, closed and in between
        for log_alpha in run.problem.density.log_alphas:
            log_alpha.copy_(3 * torch.randn(log_alpha.shape, generator=generator))
    before = purged_share(run)
    order = ranking(ranked(run), run.problem.density.layer_of_gate, keep_a_gate_open=True)
    assert round_to_targets_(run.problem)
    share = purged_share(run)
    flat = ranked(run)
    open_now = hc.median_gates(flat) > 0
    assert bool(open_now[order[: int(open_now.sum())]].all())  # the eval gates: a prefix of the ranking before
    per_set = torch.zeros(len(run.problem.density.layers)).index_add(
        0, run.problem.density.layer_of_gate, open_now.float()
    )
    assert bool((per_set >= 1).all())  # keep_a_gate_open: no set cut
    if constraint == "le":
        assert share <= budget + 1e-6 < before
    next_gate = torch.zeros_like(flat)
    next_gate[order[: int(open_now.sum()) + 1]] = 1.0
    one_more = run.problem.cost.share_vector(next_gate)[0].item()
    assert one_more > budget  # the longest prefix within the budget (or, under eq, the closer of the two)
    assert abs(share - budget) <= abs(one_more - budget) + 1e-6 or share <= budget


def test_layer_wise_targets_are_not_rounded():
    run = build_run(HParams.resolve(arch="mlp", target_scope="layer", target=(0.3,), fix_gates=0.5, device="cpu"))
    assert not round_to_targets_(run.problem)
