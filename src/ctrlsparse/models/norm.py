"""BatchNorm after a sparsifiable conv: over the conv's open channels when it is gated, plain when dense."""

from __future__ import annotations

from torch import Tensor, nn

from ctrlsparse.layers import L0BatchNorm2d, L0Conv2d


def batchnorm_for(conv: nn.Conv2d) -> nn.BatchNorm2d:
    """An ``L0BatchNorm2d`` after a gated conv (it leaves closed channels at zero), else a ``BatchNorm2d``."""
    return L0BatchNorm2d(conv.out_channels) if isinstance(conv, L0Conv2d) else nn.BatchNorm2d(conv.out_channels)


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """conv -> BatchNorm over the conv's open channels (all channels when dense)."""
    x = conv(x)
    return bn(x, conv.active_channels()) if isinstance(conv, L0Conv2d) else bn(x)


def conv_bn_relu(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """conv -> BatchNorm over the conv's open channels -> ReLU."""
    return conv_bn(conv, bn, x).relu()
