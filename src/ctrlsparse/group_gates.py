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

import math

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

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


def set_channels_per_gate_(module: fx.GraphModule) -> None:
    """Set each GateGroup's ``channels_per_gate``: the gcd, over the tensors its gate points and masked LayerNorms
    gate, of the channels one of its gates covers there (1 for a plain channel set; a grouped conv's group gate
    covers the group's width), so that channel rounding rounds channels, not gates."""
    modules = dict(module.named_modules())
    found: dict[str, int] = {}
    for node in module.graph.nodes:
        point = modules.get(str(node.target)) if node.op == "call_module" else None
        if not isinstance(point, GatePoint | MaskedLayerNorm):
            continue
        names = [str(a.target) for a in node.args if isinstance(a, fx.Node) and a.op == "call_module"]
        names = [name for name in names if isinstance(modules.get(name), GateGroup)]
        sizes = [modules[name].n_gates for name in names]
        index = point.index.cpu() if point.index is not None else torch.arange(sum(sizes))
        counts = torch.bincount(index, minlength=sum(sizes) + 1)[: sum(sizes)]
        for name, part in zip(names, counts.split(sizes), strict=True):
            found[name] = math.gcd(found.get(name, 0), *part[part > 0].tolist())
    for name, width in found.items():
        modules[name].channels_per_gate = max(1, width)
