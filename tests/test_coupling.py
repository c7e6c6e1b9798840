"""Coupled channels: one gate per set of channels that can only go together (ctrlsparse.gate), and the purge and
the expected cost that read the same analysis. Each small model holds one kind of coupling; for each: with every
gate open the gated model computes the original; on a random gate pattern the purged model computes the gated
eval function; at 0/1 gates the expected cost is the purged model's size; and the coupled layers shrink together."""

from __future__ import annotations

import pytest
import torch
from channels import check_exact, check_export_without_ctrlsparse, max_error, randomised, set_pattern
from torch import nn

import ctrlsparse
from ctrlsparse.cost import ExpectedCost
from ctrlsparse.group_gates import GateGroup, GatePoint, MaskedLayerNorm
from ctrlsparse.layers import gated_layers
from ctrlsparse.purge import purge


def conv_bn(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(cout))


class Residual(nn.Module):
    """stem -> [a -> b] + stem -> [c -> d] + that -> pool -> fc: the stream is one set of 8 channels."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b, self.c, self.d = (
            conv_bn(3, 8),
            conv_bn(8, 6),
            conv_bn(6, 8),
            conv_bn(8, 5),
            conv_bn(5, 8),
        )
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.stem(x).relu()
        x = (self.b(self.a(x).relu()) + x).relu()
        x = (self.d(self.c(x).relu()) + x).relu()
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def test_a_residual_stream_shares_one_gate_per_channel_across_every_layer_that_writes_or_reads_it():
    x = torch.randn(2, 3, 8, 8)
    gated = check_exact(Residual(), x)
    sizes = {name: group.n_gates for name, group in gated_layers(gated)}
    assert sizes == {"gates.stem_0": 8, "gates.a_0": 6, "gates.c_0": 5}
    with torch.no_grad():  # close stream channels 2 and 5: stem, b and d lose those rows, a, c and fc those columns
        gated.get_submodule("gates.stem_0").log_alpha.copy_(torch.tensor([5.0, 5, -5, 5, 5, -5, 5, 5]))
    purged = purge(gated, x)
    convs = {name: m for name, m in purged.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    assert convs["stem_0"].out_channels == convs["b_0"].out_channels == convs["d_0"].out_channels == 6
    assert convs["a_0"].in_channels == convs["c_0"].in_channels == convs["fc"].in_features == 6
    with torch.no_grad():
        assert max_error(purged(x), gated(x)) <= 1e-5
    # every read that mixes channels passes a gate: a, c and the classifier, not the adds
    assert sum(isinstance(m, GatePoint) for m in gated.modules()) == 5  # stream x3, a's and c's outputs


class Concat(nn.Module):
    """Two branches concatenated (DenseNet / Inception): each slice keeps its branch's gates."""

    def __init__(self):
        super().__init__()
        self.stem, self.left, self.right, self.mix = conv_bn(3, 6), conv_bn(6, 4), conv_bn(6, 5), conv_bn(15, 7)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        x = self.stem(x).relu()
        x = torch.cat([self.left(x).relu(), x, self.right(x).relu()], 1)
        return self.fc(self.mix(x).relu().mean((2, 3)))


def test_a_concatenation_keeps_each_slice_coupled_with_its_branch():
    x = torch.randn(2, 3, 8, 8)
    gated = check_exact(Concat(), x)
    assert sorted(group.n_gates for _, group in gated_layers(gated)) == [4, 5, 6, 7]
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        gated.get_submodule("gates.right_0").log_alpha[[0, 3]] = -5.0
    purged = purge(gated, x)
    assert purged.get_submodule("right_0").out_channels == 3 and purged.get_submodule("mix_0").in_channels == 13


class Shuffle(nn.Module):
    """ShuffleNet V2's unit: split, one half through a branch, concatenate, shuffle two groups."""

    def __init__(self):
        super().__init__()
        self.stem, self.head = conv_bn(3, 8), conv_bn(8, 6)
        self.branches = nn.ModuleList([conv_bn(4, 4), conv_bn(4, 4)])
        self.fc = nn.Linear(6, 3)

    @staticmethod
    def shuffle(x):
        n, c, h, w = x.size()
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

    def forward(self, x):
        x = self.stem(x).relu()
        for branch in self.branches:
            kept, moved = x.chunk(2, dim=1)
            x = self.shuffle(torch.cat((kept, branch(moved).relu()), dim=1))
        return self.fc(self.head(x).relu().mean((2, 3)))


def test_a_split_and_channel_shuffle_are_followed_channel_by_channel():
    x = torch.randn(2, 3, 8, 8)
    gated = check_exact(Shuffle(), x, seeds=(1, 2, 3, 4))
    assert sum(group.n_gates for _, group in gated_layers(gated)) == 8 + 4 + 4 + 6  # stem, branches, head


class SqueezeExcite(nn.Module):
    """x * sigmoid(expand(relu(squeeze(pool(x))))): the expand's outputs go with x's channels."""

    def __init__(self):
        super().__init__()
        self.stem, self.squeeze, self.expand = conv_bn(3, 8), nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
        self.project, self.fc = conv_bn(8, 5), nn.Linear(5, 3)

    def forward(self, x):
        x = self.stem(x).relu()
        scale = torch.sigmoid(self.expand(self.squeeze(x.mean((2, 3), keepdim=True)).relu()))
        return self.fc(self.project(x * scale).relu().mean((2, 3)))


def test_a_squeeze_excitation_multiply_couples_its_scale_with_the_channels_it_scales():
    x = torch.randn(2, 3, 8, 8)
    gated = check_exact(SqueezeExcite(), x)
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        gated.get_submodule("gates.stem_0").log_alpha[[1, 2, 6]] = -5.0
    purged = purge(gated, x)
    assert purged.get_submodule("expand").out_channels == 5 and purged.get_submodule("squeeze").in_channels == 5
    assert purged.get_submodule("project_0").in_channels == 5


class ChannelsLast(nn.Module):
    """A ConvNeXt block: depthwise conv -> NHWC LayerNorm -> Linear -> GELU -> Linear -> layer scale + input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.norm, self.up, self.down = nn.LayerNorm(8), nn.Linear(8, 16), nn.Linear(16, 8)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.down(nn.functional.gelu(self.up(self.norm(y)))).permute(0, 3, 1, 2)
        return self.fc((x + self.scale * y).mean((2, 3)))


def test_a_channels_layer_norm_and_layer_scale_go_with_the_stream():
    x = torch.randn(2, 3, 8, 8)
    gated = check_exact(ChannelsLast(), x)
    assert sum(isinstance(m, MaskedLayerNorm) for m in gated.modules()) == 1
    assert sorted(group.n_gates for _, group in gated_layers(gated)) == [8, 16]
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        gated.get_submodule("gates.stem").log_alpha[[0, 7]] = -5.0
    purged = purge(gated, x)
    assert purged.get_submodule("norm").normalized_shape == (6,) and purged.get_submodule("dw").groups == 6
    assert purged.get_submodule("up").in_features == 6 and purged.get_submodule("down").out_features == 6
    with torch.no_grad():
        assert max_error(purged(x), gated(x)) <= 1e-5


class Grouped(nn.Module):
    """1x1 -> 3x3 grouped (4 groups of 3) -> 1x1: a group's inputs and outputs share its gate."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = conv_bn(3, 12), conv_bn(12, 12, groups=4), conv_bn(12, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.c(self.b(self.a(x).relu()).relu()).relu().mean((2, 3)))


def test_a_grouped_conv_keeps_or_drops_whole_groups():
    x = torch.randn(2, 3, 8, 8)
    gated = check_exact(Grouped(), x)
    groups = dict(gated_layers(gated))
    assert groups["gates.a_0"].n_gates == 4  # one gate per conv group: 3 channels of a, b's group, 3 of c's input
    with torch.no_grad():
        for group in groups.values():
            group.log_alpha.fill_(5.0)
        groups["gates.a_0"].log_alpha[2] = -5.0
    purged = purge(gated, x)
    assert purged.get_submodule("b_0").groups == 3 and purged.get_submodule("c_0").in_channels == 9
    cost = ExpectedCost(gated, x)
    p = torch.ones(sum(cost.counts), dtype=torch.float64)
    p[: groups["gates.a_0"].n_gates] = 0.5  # one event per group: the block counts P, not P^2
    half = cost.costs(p)["params"] - cost.costs(torch.ones_like(p))["params"]
    zero = p.clone()
    zero[:4] = 0.0
    assert half.item() == pytest.approx(
        0.5 * (cost.costs(zero)["params"] - cost.costs(torch.ones_like(p))["params"]).item()
    )


def test_a_gate_group_weighs_what_its_gate_removes_in_the_density():
    x = torch.randn(2, 3, 8, 8)
    gated = ctrlsparse.gate(randomised(Residual()), x)
    stem = gated.get_submodule("gates.stem_0")
    assert isinstance(stem, GateGroup)
    # one stream channel: stem row (27) + 2 BN, a and c columns (6*9, 5*9), b and d rows (6*9, 5*9) + 2 BN each,
    # fc column (4)
    assert stem.group_size == 27 + 2 + 54 + 45 + 54 + 2 + 45 + 2 + 4


def test_a_group_whose_gates_remove_different_amounts_is_split_by_amount():
    from ctrlsparse.channels.coupling import GroupPlan
    from ctrlsparse.models.autogate import uniform_plans

    plans = [GroupPlan("a", [3, 4, 5, 6]), GroupPlan("b", [7])]
    split = uniform_plans(plans, [torch.tensor([10, 20, 10, 20]), torch.tensor([5])])
    assert [(p.name, p.components) for p in split] == [("a", [3, 5]), ("a.1", [4, 6]), ("b", [7])]


@pytest.mark.parametrize(
    "model",
    [ChannelsLast, pytest.param(Shuffle, marks=pytest.mark.slow), pytest.param(Grouped, marks=pytest.mark.slow)],
)
def test_the_purged_model_exports_and_loads_without_ctrlsparse(model, tmp_path):
    x = torch.randn(2, 3, 8, 8)
    gated = ctrlsparse.gate(randomised(model()), x).eval()
    set_pattern(gated, 3, fractional=True)
    check_export_without_ctrlsparse(gated, x, tmp_path)
