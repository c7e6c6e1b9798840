"""Gates shared by coupled channels (what :func:`ctrlsparse.gate` puts into a model).

- :class:`GateGroup`: a set of hard-concrete gates, one per coupled channel set (the same channel of a residual
  stream in every layer that writes or reads it, a grouped conv's group with its input and output channels,
  ...). Called once at the top of the gated model's forward, so every place a gate acts on sees the same sample.
- :class:`GatePoint`: ``x * z`` over the channel dimension, in front of every layer that mixes channels (a conv,
  a Linear, an op the analysis does not know). Each channel of ``x`` takes its gate from one group (or 1 where
  it is not gated): ``z = cat(groups' gates, [1])[index]``. A closed channel reaches no layer that mixes it into
  others, so removing it everywhere (the purge) changes nothing the model computes.
- :class:`MaskedLayerNorm`: a LayerNorm over the last dimension whose mean and variance are taken over the open
  channels only (a LayerNorm's statistics mix every channel, so it cannot simply read zeros): with every gate
  open it is ``F.layer_norm``, and the purged model's LayerNorm over the kept channels computes the same.

Neither point module holds parameters: the weights of a gated model are the original's, unscaled and under
their names, so with every gate open it computes exactly what the original does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlsparse.layers import Gates


class GateGroup(Gates):
    """``n_gates`` gates, each switching off ``group_size`` parameters (what closing that gate alone removes);
    ``kind``: what they gate, ``heads`` (attention heads), ``width`` (a residual stream's channels) or ``hidden``
    (MLP neurons, a block's inner channels), for layer-wise targets by kind."""

    def __init__(
        self, n_gates: int, group_size: int = 1, droprate_init: float = 0.5, device=None, kind: str = "hidden"
    ):
        super().__init__()
        self.kind = kind
        self.log_alpha = nn.Parameter(torch.empty(n_gates, device=device))
        self._setup_gates(group_size, droprate_init, structured=True)

    def forward(self) -> Tensor:
        return self.gates()


def channel_gates(index: Tensor | None, zs: tuple[Tensor, ...]) -> Tensor:
    """Each channel's gate: ``cat(zs, [1])[index]`` (``index`` None: the one group's gates in order)."""
    if index is None:
        return zs[0]
    return torch.cat([*zs, zs[0].new_ones(1)])[index]


class GatePoint(nn.Module):
    """``x * z`` along dimension ``dim``, z gathered from the gate groups passed to ``forward``."""

    def __init__(self, dim: int, index: Tensor | None):
        super().__init__()
        self.dim = dim
        self.register_buffer("index", index)

    def forward(self, x: Tensor, *zs: Tensor) -> Tensor:
        z = channel_gates(self.index, zs).to(x.dtype)
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * z.view(shape)


class MaskedLayerNorm(nn.Module):
    """LayerNorm over the last dimension, with statistics over the channels whose gate is non-zero."""

    def __init__(self, eps: float, index: Tensor | None):
        super().__init__()
        self.eps = eps
        self.register_buffer("index", index)

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None, *zs: Tensor) -> Tensor:
        mask = channel_gates(self.index, zs) != 0
        if bool(mask.all()):
            return F.layer_norm(x, x.shape[-1:], weight, bias, self.eps)
        keep = mask.to(x.dtype)
        count = keep.sum().clamp_min(1.0)
        mean = (x * keep).sum(-1, keepdim=True) / count
        centred = (x - mean) * keep
        variance = centred.pow(2).sum(-1, keepdim=True) / count
        out = centred * torch.rsqrt(variance + self.eps)
        if weight is not None:
            out = out * weight
        if bias is not None:
            out = out + bias
        return out
