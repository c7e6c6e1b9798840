"""A LeNet5-Caffe-style CNN sized for small images (8x8 digits):

    conv 16@3x3 -> BN -> ReLU -> pool -> conv 32@3x3 -> BN -> ReLU -> pool -> FC 100 -> ReLU -> FC classes

All four weight layers are gated: the convs by output channel, the FCs by input neuron (as LeNet5 in the
paper). Unlike LeNet5 it has BatchNorm after each conv (an ``L0BatchNorm2d`` that normalises only the conv's
open channels, the layer WRN-28-10 needs too): with 12 minibatches per digits epoch, the plain LeNet learns
too slowly for the density constraint, which then closes the gates of a network that has not learnt yet.
"""

from __future__ import annotations

from torch import Tensor, nn

from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.models.norm import conv_bn_relu

CHANNELS = (16, 32)
HIDDEN = 100


class SmallCNN(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory):
        super().__init__()
        in_channels, height, width = input_shape
        if height < 4 or width < 4:
            raise ValueError(f"arch 'cnn' needs images of at least 4x4 pixels, got input shape {input_shape}")
        self.conv1 = layers.conv(in_channels, CHANNELS[0], 3, padding=1, bias=False)
        self.bn1 = layers.batchnorm(self.conv1)
        self.conv2 = layers.conv(CHANNELS[0], CHANNELS[1], 3, padding=1, bias=False)
        self.bn2 = layers.batchnorm(self.conv2)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = layers.linear(CHANNELS[1] * (height // 4) * (width // 4), HIDDEN)
        self.fc2 = layers.linear(HIDDEN, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(conv_bn_relu(self.conv1, self.bn1, x))
        x = self.pool(conv_bn_relu(self.conv2, self.bn2, x))
        return self.fc2(self.fc1(x.flatten(1)).relu())


def build_cnn(input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory) -> nn.Module:
    return SmallCNN(input_shape, num_classes, layers)
