"""LeNet5-Caffe, the paper's MNIST CNN (as in Louizos et al.'s L0 code), every weight layer gated:

    conv 20@5x5 -> ReLU -> maxpool 2 -> conv 50@5x5 -> ReLU -> maxpool 2 -> FC 800->500 -> ReLU -> FC 500->classes

The convs are gated by output channel, the FCs by input neuron; all four have biases. On 28x28 MNIST the
flattened map is 50x4x4 = 800 and the dense model has 431,080 parameters. No BatchNorm (unlike ``cnn``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ctrlsparse.models.factory import LayerFactory

CHANNELS = (20, 50)
KERNEL = 5
HIDDEN = 500


def _after_conv_pool(size: int) -> int:
    return (size - KERNEL + 1) // 2


class LeNet5(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory):
        super().__init__()
        in_channels, height, width = input_shape
        height, width = (_after_conv_pool(_after_conv_pool(size)) for size in (height, width))
        if height < 1 or width < 1:
            raise ValueError(f"arch 'lenet5' needs images of at least 16x16 pixels, got input shape {input_shape}")
        self.conv1 = layers.conv(in_channels, CHANNELS[0], KERNEL)
        self.conv2 = layers.conv(CHANNELS[0], CHANNELS[1], KERNEL)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = layers.linear(CHANNELS[1] * height * width, HIDDEN)
        self.fc2 = layers.linear(HIDDEN, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.conv1(x).relu())
        x = self.pool(self.conv2(x).relu())
        return self.fc2(self.fc1(x.flatten(1)).relu())


def build_lenet5(input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory) -> nn.Module:
    return LeNet5(input_shape, num_classes, layers)
