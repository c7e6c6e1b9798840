"""The paper's MLP: hidden layers 300-100, every Linear gated by input neuron (64-300-100-10 on digits,
784-300-100-10 on MNIST)."""

from __future__ import annotations

import math

from torch import nn

from ctrlsparse.models.factory import LayerFactory

HIDDEN = (300, 100)


def build_mlp(input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory) -> nn.Module:
    widths = [math.prod(input_shape), *HIDDEN]
    modules: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        modules += [layers.linear(fan_in, fan_out), nn.ReLU()]
    modules.append(layers.linear(widths[-1], num_classes))
    return nn.Sequential(*modules)
