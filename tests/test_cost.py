"""Expected MACs and parameters (ctrlsparse.cost): exact against the purged model when every gate is 0 or 1,
the dense model's at all-open, and gradients that match finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrlsparse.cost import ExpectedCost
from ctrlsparse.layers import gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.purge import count, purge
from ctrlsparse.registry import ARCHS

SHAPES = {  # small inputs keep the big nets fast (they end in adaptive pooling); as in test_purge
    "mlp": ((1, 8, 8), 10),
    "cnn": ((1, 8, 8), 10),
    "lenet5": ((1, 28, 28), 10),
    "wrn16_4": ((3, 32, 32), 10),
    "wrn28_10": ((3, 16, 16), 100),
    "resnet18": ((3, 32, 32), 200),
    "resnet50": ((3, 64, 64), 1000),
    "vit": ((1, 8, 8), 10),
}
BIG = {"wrn28_10", "resnet50"}


def arch_params():
    return [pytest.param(a, marks=pytest.mark.slow) if a in BIG else a for a in ARCHS]


def build(arch: str) -> tuple[nn.Module, torch.Tensor]:
    shape, classes = SHAPES[arch]
    torch.manual_seed(0)
    return ARCHS[arch](shape, classes, LayerFactory(gated=True)).eval(), torch.randn(1, *shape)


def set_pattern(model: nn.Module, open_share: float, seed: int) -> torch.Tensor:
    """Open each gate with probability ``open_share`` (at least one per layer, as the purge keeps one channel of a
    closed layer); log alpha +-10 makes the eval gates exactly 1 / 0. Returns the 0/1 vector of all gates."""
    generator = torch.Generator().manual_seed(seed)
    pattern = []
    with torch.no_grad():
        for _, layer in gated_layers(model):
            opened = torch.rand(layer.n_gates, generator=generator) < open_share
            opened[torch.randint(layer.n_gates, (1,), generator=generator)] = True
            layer.log_alpha.copy_(torch.where(opened, 10.0, -10.0))
            pattern.append(opened.double())  # float64: MAC counts of the big nets stay exact
    return torch.cat(pattern)


@pytest.mark.parametrize("arch", arch_params())
def test_all_open_is_the_dense_model(arch):
    model, example = build(arch)
    cost = ExpectedCost(model, example)
    dense = count(model, example)
    costs = cost.costs(torch.ones(sum(cost.counts), dtype=torch.float64))
    assert costs["params"].item() == dense.params
    assert costs["macs"].item() == dense.macs
    assert cost.unmodelled_macs == 0  # every MAC of the registered archs is in a layer the walk models


@pytest.mark.parametrize("arch", arch_params())
@pytest.mark.parametrize(("open_share", "seed"), [(0.5, 1), (0.2, 2), (0.8, 3)])
def test_zero_one_gates_give_the_purged_model(arch, open_share, seed):
    model, example = build(arch)
    cost = ExpectedCost(model, example)
    pattern = set_pattern(model, open_share, seed)
    purged = count(purge(model, example), example)
    costs = cost.costs(pattern)
    assert (costs["params"].item(), costs["macs"].item()) == (purged.params, purged.macs)
    assert purged.macs < cost.dense_macs  # the pattern did close something


def test_expected_follows_the_log_alphas():
    model, example = build("cnn")
    cost = ExpectedCost(model, example)
    set_pattern(model, 0.5, 4)
    shares = cost.shares()
    purged = count(purge(model, example), example)
    assert shares["macs"].item() == pytest.approx(purged.macs / cost.dense_macs, abs=1e-3)  # P = 1 - 1e-6 ...
    assert shares["params"].item() == pytest.approx(purged.params / cost.dense_params, abs=1e-3)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "lenet5", "wrn16_4"])
def test_gradient_matches_finite_differences(arch):
    model, example = build(arch)
    cost = ExpectedCost(model, example)
    generator = torch.Generator().manual_seed(5)
    p = (0.05 + 0.9 * torch.rand(sum(cost.counts), generator=generator)).double().requires_grad_()
    for quantity in ("macs", "params"):
        assert torch.autograd.gradcheck(lambda q, key=quantity: cost.costs(q)[key], (p,), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "lenet5"])
def test_gate_shares_are_what_closing_each_gate_alone_saves(arch):
    """gate_shares: per kind, d share / d P at all-open, normalised; the cost is multilinear in gates of
    different layers, so that is exactly the share one gate saves when it alone closes."""
    model, example = build(arch)
    cost = ExpectedCost(model, example)
    n = sum(cost.counts)
    dense = cost.share_vector(torch.ones(n, dtype=torch.float64))
    saved = torch.stack([dense - cost.share_vector(1.0 - torch.eye(n, dtype=torch.float64)[i]) for i in range(n)])
    for quantity, kind in enumerate(("macs", "params")):
        shares = cost.gate_shares()[kind]
        assert shares.sum().item() == pytest.approx(1.0)
        assert shares.tolist() == pytest.approx((saved[:, quantity] / saved[:, quantity].sum()).tolist(), rel=1e-9)


def test_gradient_reaches_the_log_alphas():
    model, example = build("cnn")
    cost = ExpectedCost(model, example)
    shares = cost.shares()
    (shares["macs"] + shares["params"]).backward()
    for _, layer in gated_layers(model):
        assert layer.log_alpha.grad is not None and bool((layer.log_alpha.grad > 0).all())


def test_residual_add_counts_a_channel_open_when_either_side_is():
    """1 - (1 - p_a)(1 - p_b): a WRN block's output channel with both sides at P = 0.5 counts 0.75 of a channel
    for the next conv; the expectation at fractional P lies strictly between the two 0/1 extremes."""
    model, example = build("wrn16_4")
    cost = ExpectedCost(model, example)
    n = sum(cost.counts)
    low, mid, high = (cost.costs(torch.full((n,), v)) for v in (0.0, 0.5, 1.0))
    assert low["macs"] < mid["macs"] < high["macs"]
    assert low["params"] < mid["params"] < high["params"]


def test_unstructured_gates_are_refused():
    torch.manual_seed(0)
    model = ARCHS["mlp"]((1, 8, 8), 10, LayerFactory(gated=True, structured=False))
    with pytest.raises(ValueError, match="gated per weight"):
        ExpectedCost(model, torch.zeros(1, 1, 8, 8))
