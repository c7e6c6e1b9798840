"""Residual networks of the paper, one builder per family (paper.md §1 gives the gating layouts):

- ``WideResNet(depth, width, ...)``: the pre-activation WideResNet-d-k of the CIFAR runs (AMLab's L0 layout). In
  every block only ``conv1`` (3x3, stride 1) is gated; ``bn2`` after it normalises only its open channels;
  ``conv2`` carries the block's stride and stays dense, as do the stem, the 1x1 shortcuts and the FC.
  Registered as ``wrn28_10`` (12 gated layers) and ``wrn16_4`` (6).
- ``ResNet(block, depths, stem, ...)``: torchvision's ResNet layout and parameter names (``conv1``, ``bn1``,
  ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``; v1.5: a bottleneck's stride is on its 3x3 conv).
  Every conv of every block is gated (ResNet-18: 16, ResNet-50: 48); stem, shortcuts and FC stay dense.
  ``resnet18`` has the TinyImageNet stem (3x3 stride 2, no maxpool: 64x64 in, 32x32 maps); ``resnet50`` the
  ImageNet stem (7x7 stride 2 + maxpool). All convs start from Kaiming-normal (fan_out) weights, which
  replaces the gated layers' 1/(1 - d) rescaling, as in the paper's code.

Residual adds go through each block's ``pad`` (:class:`ChannelPad`): the identity in gated and dense models,
where a closed channel is an all-zero channel of full width. A purge that removes output channels of a block's
last conv sets ``pad.kept`` to the surviving channel indices, so the block's output is zero-padded back to the
full width before the add (shortcuts stay dense).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from ctrlsparse.layers import GatedLayer
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.models.norm import conv_bn, conv_bn_relu


class ChannelPad(nn.Module):
    """Scatter the ``kept`` channels of a block's output into zeros of the full residual ``width``."""

    kept: Tensor | None

    def __init__(self, width: int, kept: Tensor | None = None):
        super().__init__()
        self.width = width
        self.register_buffer("kept", kept)

    def forward(self, x: Tensor) -> Tensor:
        if self.kept is None:
            return x
        full = x.new_zeros(x.shape[0], self.width, *x.shape[2:])
        return full.index_copy(1, self.kept, x)


# --- pre-activation WideResNet (CIFAR) ---


class PreActBlock(nn.Module):
    """BN-ReLU-conv1 (gated) -> BN over its open channels -ReLU-conv2 (dense, strided), plus the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, layers: LayerFactory):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = layers.conv(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = layers.batchnorm(self.conv1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.shortcut = None
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.bn1(x).relu()
        out = self.conv2(conv_bn_relu(self.conv1, self.bn2, pre))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    def __init__(self, depth: int, width: int, input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"a WideResNet's depth must be 6n + 4, got {depth}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False)
        stages = []
        for index in range(3):
            in_channels, stride = widths[index], 1 if index == 0 else 2
            stage = []
            for _ in range(blocks):
                stage.append(PreActBlock(in_channels, widths[index + 1], stride, layers))
                in_channels, stride = widths[index + 1], 1
            stages.append(nn.Sequential(*stage))
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(widths[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # He init (fan_in) for every conv; then gated ones get 1/(1 - d)
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if isinstance(module, GatedLayer):
                    with torch.no_grad():
                        module.weight.mul_(1.0 / (1.0 - module.droprate_init))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        return self.fc(self.pool(self.bn(x).relu()).flatten(1))


build_wrn28_10 = partial(WideResNet, 28, 10)
build_wrn16_4 = partial(WideResNet, 16, 4)


# --- torchvision-layout ResNet (TinyImageNet ResNet-18, ImageNet ResNet-50) ---


def downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if in_channels == out_channels and stride == 1:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, layers: LayerFactory):
        super().__init__()
        self.conv1 = layers.conv(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = layers.batchnorm(self.conv1)
        self.conv2 = layers.conv(width, width, 3, padding=1, bias=False)
        self.bn2 = layers.batchnorm(self.conv2)
        self.pad = ChannelPad(width)
        self.downsample = downsample(in_channels, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = conv_bn(self.conv2, self.bn2, conv_bn_relu(self.conv1, self.bn1, x))
        shortcut = x if self.downsample is None else self.downsample(x)
        return (self.pad(out) + shortcut).relu()


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, layers: LayerFactory):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = layers.conv(in_channels, width, 1, bias=False)
        self.bn1 = layers.batchnorm(self.conv1)
        self.conv2 = layers.conv(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = layers.batchnorm(self.conv2)
        self.conv3 = layers.conv(width, out_channels, 1, bias=False)
        self.bn3 = layers.batchnorm(self.conv3)
        self.pad = ChannelPad(out_channels)
        self.downsample = downsample(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = conv_bn_relu(self.conv2, self.bn2, conv_bn_relu(self.conv1, self.bn1, x))
        out = conv_bn(self.conv3, self.bn3, out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return (self.pad(out) + shortcut).relu()


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: tuple[int, ...],
        stem: str,
        input_shape: tuple[int, ...],
        num_classes: int,
        layers: LayerFactory,
    ):
        super().__init__()
        if stem == "imagenet":  # 7x7 stride 2 + maxpool: 224 -> 56
            self.conv1 = nn.Conv2d(input_shape[0], 64, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:  # "tiny": 3x3 stride 2, no maxpool: 64 -> 32
            self.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=2, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        for index, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True), start=1):
            blocks = []
            for position in range(depth):
                stride = 2 if index > 1 and position == 0 else 1
                blocks.append(block(in_channels, width, stride, layers))
                in_channels = width * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.bn1(self.conv1(x)).relu())
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


build_resnet18 = partial(ResNet, BasicBlock, (2, 2, 2, 2), "tiny")
build_resnet50 = partial(ResNet, Bottleneck, (3, 4, 6, 3), "imagenet")
