"""The purged model's layers: plain torch modules holding the kept slices of the gated model's."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ctrlsparse.layers import GatedLayer


def plain(module: nn.Module) -> nn.Module:
    """A gated layer as the plain layer of its eval weights, whole; any other module as it is."""
    if not isinstance(module, GatedLayer):
        return module
    weight, bias = module.eval_params()
    return sliced_layer(module, weight, bias, torch.arange(weight.shape[0]), torch.arange(weight.shape[1]))


def _conv_like(layer: nn.Module, in_channels: int, out_channels: int, groups: int, bias: bool) -> nn.Module:
    kind = next(c for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d) if isinstance(layer, c))
    return kind(
        in_channels,
        out_channels,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        groups,
        bias,
        layer.padding_mode,
    )


def sliced_layer(layer: nn.Module, weight: Tensor, bias: Tensor | None, rows: Tensor, columns: Tensor) -> nn.Module:
    """A plain Conv / Linear (groups 1) holding ``weight[rows][:, columns]`` (and ``bias[rows]``)."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        new = _conv_like(layer, len(columns), len(rows), 1, bias is not None)
    else:
        new = nn.Linear(len(columns), len(rows), bias=bias is not None)
    new = new.to(device=weight.device, dtype=weight.dtype)
    rows, columns = rows.to(weight.device), columns.to(weight.device)
    with torch.no_grad():
        new.weight.copy_(weight[rows][:, columns])
        if bias is not None:
            new.bias.copy_(bias[rows])
    return new


def sliced_grouped(layer: nn.Module, weight: Tensor, bias: Tensor | None, rows: Tensor, groups: int) -> nn.Module:
    """A grouped Conv over ``groups`` of its groups, whole: its filters ``rows`` (all of those groups')."""
    per_group = weight.shape[1]
    new = _conv_like(layer, per_group * groups, len(rows), groups, bias is not None)
    new = new.to(device=weight.device, dtype=weight.dtype)
    rows = rows.to(weight.device)
    with torch.no_grad():
        new.weight.copy_(weight[rows])
        if bias is not None:
            new.bias.copy_(bias[rows])
    return new


def sliced_batchnorm(bn: nn.Module, keep: Tensor, mask: Tensor | None, scale: Tensor | None = None) -> nn.Module:
    """A plain BatchNorm over the kept channels. Channels an ``L0BatchNorm2d`` passes through unchanged (mask
    false) get the identity: mean 0, variance 1 - eps, scale 1, shift 0. ``scale``: the gates an
    ``L0BatchNorm2d`` multiplies its output by (``gate_after_norm``), folded into the affine scale and shift."""
    affine = bn.affine or scale is not None
    new = (
        type(bn)(len(keep), bn.eps, bn.momentum, affine, bn.track_running_stats)
        if type(bn)
        in (
            nn.BatchNorm1d,
            nn.BatchNorm2d,
            nn.BatchNorm3d,
        )
        else nn.BatchNorm2d(len(keep), bn.eps, bn.momentum, affine, bn.track_running_stats)
    )
    source = bn.weight if bn.affine else bn.running_mean
    new = new.to(device=source.device if source is not None else None)
    index = keep.to(new.running_mean.device) if new.running_mean is not None else keep
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[index])
            new.bias.copy_(bn.bias[index])
        if bn.running_mean is not None:
            new.running_mean.copy_(bn.running_mean[index])
            new.running_var.copy_(bn.running_var[index])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
        if mask is not None:
            identity = ~mask[keep].to(index.device)
            if new.running_mean is not None:
                new.running_mean[identity] = 0.0
                new.running_var[identity] = 1.0 - bn.eps
            if affine:
                new.weight[identity] = 1.0
                new.bias[identity] = 0.0
        if scale is not None:  # z x (w x_hat + b) = (z w) x_hat + z b on the open channels
            factor = torch.where(mask[keep], scale[keep], torch.ones(())).to(new.weight.device, new.weight.dtype)
            new.weight.mul_(factor)
            new.bias.mul_(factor)
    return new


def sliced_layer_norm(width: int, eps: float, weight: Tensor | None, bias: Tensor | None, keep: Tensor) -> nn.Module:
    """A plain LayerNorm over the kept channels (the masked LayerNorm's statistics over its open channels)."""
    new = nn.LayerNorm(width, eps=eps, elementwise_affine=weight is not None, bias=bias is not None)
    device = weight.device if weight is not None else None
    new = new.to(device=device)
    with torch.no_grad():
        if weight is not None:
            new.weight.copy_(weight.detach()[keep.to(weight.device)])
        if bias is not None:
            new.bias.copy_(bias.detach()[keep.to(bias.device)])
    return new
