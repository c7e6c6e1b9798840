"""Gated layers: ``L0Linear``, ``L0Conv2d`` and ``L0BatchNorm2d`` (the paper's), and ``Gates``, what every set of
gates shares (the gated layers', and :class:`~ctrlsparse.group_gates.GateGroup`, gates shared across layers).

Every gated layer holds one 1-D parameter ``log_alpha`` (one entry per gate) and a scalar ``group_size``:
the number of sparsifiable parameters one gate switches off. Groups (paper.md §1):

- structured ``L0Linear``: one gate per *input neuron*; group = a weight column (``out_features``); the bias
  stays dense and is not sparsifiable.
- structured ``L0Conv2d``: one gate per *output channel*; group = the filter (``in/groups * kh * kw``) plus
  its bias entry when there is a bias.
- unstructured: one gate per weight and one per bias entry; group size 1.

The layers subclass their dense torch counterparts, so their weights initialise the same way (then scaled
by 1 / (1 - droprate_init), as the paper's L0 layers do, so that the gated signal starts at the dense
signal's size: E[z] = 1 - d at initialisation) and a purge can copy them into plain modules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlsparse import gates as hc


class Gates(nn.Module):
    """A set of hard-concrete gates: ``log_alpha`` (one entry per gate) and ``group_size``, the sparsifiable
    parameters one gate switches off. The gated layers below carry their own; a
    :class:`~ctrlsparse.group_gates.GateGroup` is a set of gates shared by coupled channels across layers."""

    log_alpha: nn.Parameter
    group_size: int
    structured: bool
    droprate_init: float
    # Channel rounding (hparam round_channels): the eval model keeps a multiple of this many channels of the set
    # (:func:`ctrlsparse.gates.round_open`); set on a model by :func:`round_channels_`. channels_per_gate: the
    # channels one gate covers in each tensor it gates (their gcd; a grouped conv's group gate: the group width).
    round_channels: int = 1
    channels_per_gate: int = 1

    def _setup_gates(self, group_size: int, droprate_init: float, structured: bool) -> None:
        self.structured = structured
        self.group_size = group_size
        self.droprate_init = droprate_init
        self.last_gates: Tensor | None = None
        self.next_gates: Tensor | None = None  # a sample drawn for this layer by sample_all_gates_, used once
        self.fixed = False  # fix_gates: the median gates in training mode too, log alpha no longer trained
        self.reset_gates()

    def reset_gates(self) -> None:
        nn.init.normal_(self.log_alpha, hc.initial_log_alpha(self.droprate_init), 0.01)

    @property
    def n_gates(self) -> int:
        return self.log_alpha.numel()

    @property
    def n_sparsifiable(self) -> int:
        return self.n_gates * self.group_size

    def gates(self) -> Tensor:
        """A fresh sample in training mode (the one :func:`sample_all_gates_` left, if any); the deterministic
        median gates in eval mode and once the gates are fixed (``fix_gates``)."""
        if not self.training or self.fixed:
            z = self.eval_gates()
            self.next_gates = None
        elif self.next_gates is not None:
            z, self.next_gates = self.next_gates, None
        else:
            z = hc.sample_gates(self.log_alpha)
        self.last_gates = z
        return z

    def prob_active(self) -> Tensor:
        return hc.prob_active(self.log_alpha)

    def eval_open(self) -> Tensor:
        """Which gates the eval model (and the purge) keeps: median non-zero, a multiple of :meth:`rounding_multiple`."""
        return hc.round_open(self.log_alpha.detach(), self.rounding_multiple())

    def rounding_multiple(self) -> int:
        """The gate count :meth:`eval_open` keeps a multiple of: enough gates for a multiple of
        :attr:`round_channels` channels (16 channels a gate: any count; 1 for attention heads, unstructured gates)."""
        if not self.structured or getattr(self, "kind", "") == "heads":
            return 1
        return self.round_channels // math.gcd(self.round_channels, self.channels_per_gate)

    def eval_gates(self) -> Tensor:
        """The deterministic eval gates: the medians; with channel rounding, 0 where :meth:`eval_open` rounds a gate
        down and 1 where it rounds one up (gates that change side open or close fully, as
        :mod:`ctrlsparse.problems.rounding` does: a kept channel of zeros would be no channel to a masked
        LayerNorm's statistics)."""
        z = hc.median_gates(self.log_alpha)
        if self.rounding_multiple() <= 1:
            return z
        return torch.where(self.eval_open(), torch.where(z > 0, z, torch.ones_like(z)), torch.zeros_like(z))

    def l2_tensors(self, root_p: Tensor) -> list[Tensor]:
        """Tensors whose squared norms sum to the gated parameters' P-weighted squared norms (none here)."""
        return []


class GatedLayer(Gates):
    """Mixin for a layer whose effective parameters are its weights times hard-concrete gates."""

    def _init_gates(self, n_gates: int, group_size: int, droprate_init: float, structured: bool) -> None:
        self.log_alpha = nn.Parameter(torch.empty(n_gates, device=self.weight.device))
        self._setup_gates(group_size, droprate_init, structured)
        with torch.no_grad():  # E[z] = 1 - d at initialisation: rescale so the expected signal is the dense one's
            self.weight.mul_(1.0 / (1.0 - droprate_init))

    def gated_params(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """Weight and bias with the gates ``z`` applied."""
        raise NotImplementedError

    def l2_tensors(self, root_p: Tensor) -> list[Tensor]:
        """Tensors whose squared norms sum to sum_g P_g ||theta_g||^2 + ||dense part||^2, given ``root_p`` =
        sqrt(P(z_g != 0)): the gated parameters with the gates set to sqrt(P) (a dense bias stays as it is)."""
        return [t for t in self.gated_params(root_p) if t is not None]

    def expected_l2(self, detach_gates: bool) -> Tensor:
        """1/2 * sum_g P(z_g != 0) * ||theta_g||^2 + 1/2 * ||dense part||^2 (paper.md §1, weight decay)."""
        p = self.prob_active()
        if detach_gates:
            p = p.detach()
        return 0.5 * sum(t.pow(2).sum() for t in self.l2_tensors(p.sqrt()))

    def eval_params(self) -> tuple[Tensor, Tensor | None]:
        """Weights with the median gates folded in, as a purge would keep them."""
        with torch.no_grad():
            return self.gated_params(self.eval_gates())


class L0Linear(nn.Linear, GatedLayer):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        droprate_init: float = 0.5,
        structured: bool = True,
        device: torch.device | str | None = None,
    ):
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device)
        if structured:
            self._init_gates(in_features, out_features, droprate_init, structured)
        else:
            self._init_gates(self.weight.numel() + (out_features if bias else 0), 1, droprate_init, structured)

    def gated_params(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.structured:
            return self.weight * z, self.bias
        n = self.weight.numel()
        bias = None if self.bias is None else self.bias * z[n:]
        return self.weight * z[:n].view_as(self.weight), bias

    def forward(self, x: Tensor) -> Tensor:
        z = self.gates()
        if self.structured and x.requires_grad:  # a hidden layer: gating its inputs costs O(batch * in)
            return F.linear(x * z, self.weight, self.bias)
        # the input layer: gating the weight columns spares the backward pass the input gradient (one matmul)
        return F.linear(x, *self.gated_params(z))


class L0Conv2d(nn.Conv2d, GatedLayer):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        droprate_init: float = 0.5,
        structured: bool = True,
        device: torch.device | str | None = None,
    ):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, bias=bias, device=device)
        if structured:
            group = self.weight[0].numel() + (1 if bias else 0)
            self._init_gates(out_channels, group, droprate_init, structured)
        else:
            self._init_gates(self.weight.numel() + (out_channels if bias else 0), 1, droprate_init, structured)
        # gate_after_norm: the BatchNorm after this conv scales its output by the gates (set by
        # LayerFactory.batchnorm); the filters are then only masked (a closed gate still zeroes its filter).
        self.norm_applies_gates = False

    def gated_params(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.norm_applies_gates:
            z = (z != 0).to(z.dtype)
        return self._scaled(z)

    def _scaled(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.structured:
            bias = None if self.bias is None else self.bias * z
            return self.weight * z.view(-1, 1, 1, 1), bias
        n = self.weight.numel()
        bias = None if self.bias is None else self.bias * z[n:]
        return self.weight * z[:n].view_as(self.weight), bias

    def l2_tensors(self, root_p: Tensor) -> list[Tensor]:
        return [t for t in self._scaled(root_p) if t is not None]  # P-weighted whether or not the norm scales

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.gated_params(self.gates())
        return self._conv_forward(x, weight, bias)

    def norm_input(self) -> Tensor:
        """What the ``L0BatchNorm2d`` after this conv takes: its last gates when the norm applies them
        (``norm_applies_gates``), else the mask of its open channels."""
        if not self.norm_applies_gates:
            return self.active_channels()
        return self.last_gates if self.last_gates is not None else hc.median_gates(self.log_alpha.detach())

    def active_channels(self) -> Tensor:
        """Boolean mask of output channels whose last gate (sample or median) is non-zero."""
        z = self.last_gates if self.last_gates is not None else self.eval_gates().detach()
        if self.structured:
            return z.detach() != 0
        n = self.weight.numel()  # unstructured: a channel is open while any of its weights (or its bias) is
        open_channels = (z.detach()[:n] != 0).view(self.out_channels, -1).any(1)
        return open_channels | (z.detach()[n:] != 0) if self.bias is not None else open_channels


class L0BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that normalises only the active channels and leaves closed (all-zero) channels at zero.

    ``forward(x, active)`` takes the boolean channel mask of the preceding gated conv (``active_channels()``);
    closed channels neither use nor update the running statistics, so a channel that is off for a while
    does not corrupt them. A closed channel's input is exactly zero (its filter is multiplied by a zero
    gate), so zeroing its scale and shift keeps it zero: a per-channel mask on the affine parameters instead of
    a pass over the activations. Without a mask it is a plain ``BatchNorm2d``.

    ``active`` may instead be the conv's gates z (floating point, ``gate_after_norm``): the output is then
    z x BN(x) over the open channels (z != 0), z folded into the scale and shift as the mask is.
    """

    def forward(self, x: Tensor, active: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if active is None:
            return super().forward(x)
        scale = active if active.is_floating_point() else None
        active = active != 0 if scale is not None else active
        track = self.training and self.running_mean is not None
        running_mean, running_var = self.running_mean, self.running_var
        if track:  # update copies (autograd keeps them), then take the update for the open channels only
            running_mean, running_var = running_mean.clone(), running_var.clone()
            self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        weight, bias = self.weight, self.bias
        if self.affine:
            factor = active.to(weight.dtype) if scale is None else scale.to(weight.dtype)
            weight, bias = weight * factor, bias * factor
        normed = F.batch_norm(
            x,
            running_mean,
            running_var,
            weight,
            bias,
            self.training or self.running_mean is None,
            momentum,
            self.eps,
        )
        if track:  # closed channels keep their running statistics
            with torch.no_grad():
                self.running_mean.copy_(torch.where(active, running_mean, self.running_mean))
                self.running_var.copy_(torch.where(active, running_var, self.running_var))
        if self.affine:
            return normed
        if scale is not None:
            normed = normed * scale.view(1, -1, 1, 1)
        return torch.where(active.view(1, -1, 1, 1), normed, x)


def gated_layers(model: nn.Module) -> list[tuple[str, Gates]]:
    """The model's gate sets (gated layers and gate groups) with their qualified names, in registration order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, Gates)]


def round_channels_(model: nn.Module, multiple: int) -> nn.Module:
    """Round every gate set's kept channels to a multiple of ``multiple`` in the eval model (1: no rounding)."""
    for _, unit in gated_layers(model):
        unit.round_channels = multiple
    return model


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [layer.log_alpha for _, layer in gated_layers(model)]


def sample_all_gates_(layers: list[Gates], log_alphas: list[Tensor], counts: list[int]) -> None:
    """Draw the next training sample of every layer's gates in one pass over all gates (a handful of kernels
    instead of a handful per layer); each layer's next ``gates()`` call in training mode takes its part."""
    parts = hc.sample_gates(torch.cat(log_alphas)).split(counts)
    for layer, z in zip(layers, parts, strict=True):
        layer.next_gates = z
