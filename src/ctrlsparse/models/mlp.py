"""The paper's MLP: hidden layers 300-100, every Linear gated by input neuron (64-300-100-10 on digits,
784-300-100-10 on MNIST). Layers are named fc1..fc3 (the names metrics and reports use)."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from ctrlsparse.models.factory import LayerFactory

HIDDEN = (300, 100)


def build_mlp(input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory) -> nn.Module:
    widths = [math.prod(input_shape), *HIDDEN, num_classes]
    modules: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
        modules[f"fc{index}"] = layers.linear(fan_in, fan_out)
        if index < len(widths) - 1:
            modules[f"relu{index}"] = nn.ReLU()
    return nn.Sequential(modules)
