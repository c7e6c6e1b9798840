"""Fractional eval gates folded into the Conv / Linear layers that read them (``purge/gate_scales.py``): the
``mul`` goes, the function stays; a multiply with any other reader stays."""

from __future__ import annotations

import pytest
import torch
from test_purge import gated_torchvision, set_gates
from torch import fx, nn

from ctrlsparse.purge import deploy_form, purge
from ctrlsparse.purge.gate_scales import fold_gate_scales


def multiplies(model: fx.GraphModule) -> int:
    return sum(n.op == "call_function" and n.target in (torch.mul,) for n in model.graph.nodes)


class Scaled(nn.Module):
    """``layer(x * s)``, ``s`` one value per channel along ``dim``; ``reuse``: ``x * s`` read by an add too."""

    def __init__(self, layer: nn.Module, channels: int, dim: int, rank: int, reuse: bool = False):
        super().__init__()
        self.layer, self.reuse = layer, reuse
        shape = [1] * rank
        shape[dim] = channels
        self.register_buffer("s", torch.rand(shape) + 0.1)

    def forward(self, x):
        y = x * self.s
        out = self.layer(y)
        return out + y.sum() if self.reuse else out


LAYERS = {
    "conv": (lambda: nn.Conv2d(6, 4, 3, padding=1), (2, 6, 5, 5), 1),
    "grouped, reflect": (lambda: nn.Conv2d(6, 4, 3, padding=1, groups=2, padding_mode="reflect"), (2, 6, 5, 5), 1),
    "depthwise x2": (lambda: nn.Conv2d(6, 12, 3, padding=1, groups=6), (2, 6, 5, 5), 1),
    "conv1d": (lambda: nn.Conv1d(6, 3, 3), (2, 6, 7), 1),
    "linear, tokens": (lambda: nn.Linear(6, 5), (2, 4, 6), 2),
}


@pytest.mark.parametrize("channels", [6, 1])  # 1: one value for every channel (a tensor left with one channel)
@pytest.mark.parametrize("name", LAYERS)
def test_scaling_a_layers_input_is_scaling_its_weights_input_columns(name, channels):
    build, shape, dim = LAYERS[name]
    torch.manual_seed(0)
    module = fx.symbolic_trace(Scaled(build(), channels, dim, len(shape)))
    x = torch.randn(shape)
    with torch.no_grad():
        reference = module(x)
        assert fold_gate_scales(module) == 1
        assert (module(x) - reference).abs().max() < 1e-5
    assert not any(n.op == "call_function" for n in module.graph.nodes)  # the multiply is gone


def test_a_multiply_with_another_reader_or_a_shared_layer_stays():
    torch.manual_seed(0)
    module = fx.symbolic_trace(Scaled(nn.Conv2d(6, 4, 3), 6, 1, 4, reuse=True))
    assert fold_gate_scales(module) == 0
    shared = nn.Conv2d(6, 6, 1)
    twice = fx.symbolic_trace(nn.Sequential(Scaled(shared, 6, 1, 4), shared))  # the conv called again
    assert fold_gate_scales(twice) == 0
    wrong_dim = fx.symbolic_trace(Scaled(nn.Linear(5, 3), 6, 1, 3))  # scales dim 1 of (N, 6, 5): not the columns
    assert fold_gate_scales(wrong_dim) == 0


@pytest.mark.parametrize("name", ["mobilenet_v2", "regnet_x_400mf"])
def test_a_purged_torchvision_model_with_fractional_gates_loses_its_multiplies(name):
    _, gated, x = gated_torchvision(name)
    set_gates(gated, "random", 0)  # closed, fractional and open gates
    plain = purge(gated, x)
    before = multiplies(plain)
    form = deploy_form(plain, x)
    assert before > 10 and form.folded_scales > 0.8 * before
    assert multiplies(form.model) == before - form.folded_scales
    assert form.summary()["deploy_folded_gate_scales"] == form.folded_scales
    x = torch.randn(3, *x.shape[1:])
    with torch.no_grad():
        reference = plain(x)
        assert (form.model(x) - reference).abs().max() / reference.abs().max().clamp(min=1.0) < 1e-5
