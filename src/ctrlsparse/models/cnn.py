"""A LeNet5-Caffe-style CNN sized for small images (8x8 digits): conv 10@3x3 -> pool -> conv 20@3x3 ->
pool -> FC 100 -> FC classes. All four layers are gated: the convs by output channel, the FCs by input
neuron (as LeNet5 in the paper)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ctrlsparse.models.factory import LayerFactory

CHANNELS = (10, 20)
HIDDEN = 100


def build_cnn(input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory) -> nn.Module:
    in_channels, height, width = input_shape
    if height < 4 or width < 4:
        raise ValueError(f"arch 'cnn' needs images of at least 4x4 pixels, got input shape {input_shape}")
    features = CHANNELS[1] * (height // 4) * (width // 4)
    return nn.Sequential(
        OrderedDict(
            conv1=layers.conv(in_channels, CHANNELS[0], 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=layers.conv(CHANNELS[0], CHANNELS[1], 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=layers.linear(features, HIDDEN),
            relu3=nn.ReLU(),
            fc2=layers.linear(HIDDEN, num_classes),
        )
    )
