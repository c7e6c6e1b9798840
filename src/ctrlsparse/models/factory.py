"""One switch between gated and dense layers, so each architecture is written once."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ctrlsparse.layers import L0BatchNorm2d, L0Conv2d, L0Linear


@dataclass(frozen=True)
class LayerFactory:
    """Builds the layers an architecture marks as sparsifiable: gated (L0) or plain dense."""

    gated: bool = True
    structured: bool = True
    droprate_init: float = 0.5
    gate_after_norm: bool = False  # a gated conv's BatchNorm scales by its gates (HParams.gate_after_norm)

    def linear(self, in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
        if not self.gated:
            return nn.Linear(in_features, out_features, bias=bias)
        return L0Linear(in_features, out_features, bias, self.droprate_init, self.structured)

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> nn.Conv2d:
        if not self.gated:
            return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        return L0Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias, self.droprate_init, self.structured
        )

    def batchnorm(self, conv: nn.Conv2d) -> nn.BatchNorm2d:
        """The BatchNorm after ``conv``: an ``L0BatchNorm2d`` after a gated conv (it leaves closed channels at zero
        and, with ``gate_after_norm`` and structured gates, scales each channel by its gate), else a plain one."""
        if not isinstance(conv, L0Conv2d):
            return nn.BatchNorm2d(conv.out_channels)
        conv.norm_applies_gates = self.gate_after_norm and conv.structured
        return L0BatchNorm2d(conv.out_channels)
