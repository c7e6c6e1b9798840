"""Channel rounding (``round_channels``): each gate set keeps a multiple of N channels, the largest log alphas; the
eval model, the cost model and the purge keep the same ones, so a run's eval numbers are its purged model's."""

from __future__ import annotations

import pytest
import torch
from channels import set_pattern
from purged_runs import train_then_purge
from test_purge import build, gated_torchvision, max_error

from ctrlsparse import gates as hc
from ctrlsparse.cost import ExpectedCost
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.layers import gated_layers, round_channels_
from ctrlsparse.purge import count, purge


@pytest.mark.parametrize(
    ("opened", "total", "multiple", "kept"),
    [
        (5, 16, 8, 8),  # nearest
        (11, 16, 8, 8),
        (12, 16, 8, 16),  # halves up
        (3, 16, 8, 8),  # never to 0 when a gate is open
        (0, 16, 8, 0),
        (16, 16, 8, 16),
        (17, 20, 8, 16),
        (19, 20, 8, 16),
        (3, 5, 8, 5),  # at most all
        (20, 20, 8, 20),  # all open stays all: the dense width
        (7, 16, 1, 7),
    ],
)
def test_the_count_is_rounded_to_the_nearest_multiple(opened, total, multiple, kept):
    assert hc.rounded_count(opened, total, multiple) == kept


def test_the_gates_with_the_largest_log_alpha_stay():
    log_alpha = torch.tensor([3.0, -5.0, 0.5, -3.0, 2.0, -4.0, 1.0, -2.0])  # 4 open: 3.0, 0.5, 2.0, 1.0
    assert hc.round_open(log_alpha, 1).tolist() == [True, False, True, False, True, False, True, False]
    assert hc.round_open(log_alpha, 8).all()
    up = hc.round_open(log_alpha[:6], 3)  # 3 open of 6 (3.0, 0.5, 2.0): already a multiple
    assert up.tolist() == [True, False, True, False, True, False]
    five = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.2, -5.0, -6.0, -3.0])  # 5 open, multiple 4: 4 (drop 0.2)
    assert hc.round_open(five, 4).tolist() == [True, True, True, True, False, False, False, False]
    six = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.2, 0.1, -6.0, -3.0])  # 6 open, multiple 4: 8 (-3.0, -6.0 too)
    assert hc.round_open(six, 4).all()


def _torchvision_resnet18():
    _, gated, x = gated_torchvision("resnet18")
    return gated, x


def _torchvision_regnet():
    _, gated, x = gated_torchvision("regnet_x_400mf")
    return gated, x


MODELS = {
    "cnn": lambda: build("cnn"),
    "resnet18": lambda: build("resnet18"),
    "vit": lambda: build("vit"),  # the residual stream's masked LayerNorms
    "torchvision_resnet18": _torchvision_resnet18,  # gate groups
    "torchvision_regnet": _torchvision_regnet,  # grouped convs: a gate covers a group of 16 channels
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("multiple", [4, 8])
def test_eval_model_cost_and_purge_keep_the_same_rounded_channels(name, multiple):
    model, x = MODELS[name]()
    cost = ExpectedCost(model, x)
    round_channels_(model, multiple)
    for seed in (0, 1):
        set_pattern(model, seed, fractional=True)  # fractional eval gates and gates near the threshold
        opened = torch.cat([unit.eval_open() for _, unit in gated_layers(model)])
        for _, unit in gated_layers(model):
            kept = int(unit.eval_open().sum())
            if unit.structured and getattr(unit, "kind", "") != "heads":
                assert kept * unit.channels_per_gate % multiple == 0 or kept == unit.n_gates, (name, kept)
        with torch.no_grad():
            reference = model.eval()(x)
            purged = purge(model, x)
            assert max_error(purged(x), reference) <= 1e-5, name  # the purge computes the rounded eval model
        costs = cost.costs(opened.double())
        counted = count(purged, x)
        assert (costs["macs"].item(), costs["params"].item()) == (counted.macs, counted.params), name
    if name in ("cnn", "torchvision_regnet"):  # the purged convs' widths are multiples
        widths = [m.out_channels for m in purged.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(width % multiple == 0 for width in widths), widths


def test_a_grouped_convs_gates_are_rounded_by_the_channels_they_cover():
    """regnet_x_400mf's block-inner sets gate whole groups of 16 channels: any count of them is a multiple of 8
    channels, so rounding to 8 keeps their counts (before, the gate counts were rounded: 3 groups of 10 went to
    8); a plain channel set's count is rounded."""
    model, x = _torchvision_regnet()
    units = [unit for _, unit in gated_layers(model)]
    assert {unit.channels_per_gate for unit in units} == {1, 16}
    round_channels_(model, 8)
    with torch.no_grad():
        for unit in units:  # 3 gates open of every set
            unit.log_alpha.copy_(torch.where(torch.arange(unit.n_gates) < 3, 10.0, -10.0))
    for unit in units:
        expected = min(unit.n_gates, 3 if unit.channels_per_gate == 16 else 8)  # a plain set: 3 rounded up to 8
        assert int(unit.eval_open().sum()) == expected, (unit.n_gates, unit.channels_per_gate)


def test_rounding_is_part_of_the_run_key_and_its_default_keeps_the_old_keys():
    plain = HParams.resolve(arch="cnn")
    assert run_key(HParams.resolve(arch="cnn", round_channels=1)) == run_key(plain)
    assert run_key(HParams.resolve(arch="cnn", round_channels=8)) != run_key(plain)
    with pytest.raises(ValueError, match="round_channels"):
        HParams.resolve(arch="cnn", round_channels=0)


def test_a_rounded_runs_eval_numbers_are_its_purged_models(tmp_path):
    summary, purged = train_then_purge(
        tmp_path, arch="cnn", budget="macs=0.4", target_scope="none", round_channels=4, epochs=3
    )
    assert purged["macs_pct"] == pytest.approx(100 * summary["eval_macs"], abs=1e-9)
    assert purged["params_pct"] == pytest.approx(100 * summary["eval_params"], abs=1e-9)
    assert purged["purged_test_accuracy"] == summary["test_accuracy"]
