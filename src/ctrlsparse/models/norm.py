"""Conv -> BatchNorm where the conv may be gated: the norm over the conv's open channels (``L0BatchNorm2d``, built
by :meth:`ctrlsparse.models.factory.LayerFactory.batchnorm`), plain when dense."""

from __future__ import annotations

from torch import Tensor, nn

from ctrlsparse.layers import L0Conv2d


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """conv -> BatchNorm over the conv's open channels (all channels when dense), scaled by the conv's gates when
    the norm applies them (``gate_after_norm``)."""
    x = conv(x)
    return bn(x, conv.norm_input()) if isinstance(conv, L0Conv2d) else bn(x)


def conv_bn_relu(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """conv -> BatchNorm over the conv's open channels -> ReLU."""
    return conv_bn(conv, bn, x).relu()
