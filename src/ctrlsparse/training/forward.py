"""The module a run's forward passes go through, with the CUDA speed-ups the hyperparameters ask for.

- ``amp``: the forward pass (not the backward, the density terms or the optimizers) under bf16 autocast; bf16
  needs no loss scaling, so cooper's step is unchanged; logits come back in float32.
- ``channels_last``: the model's 4-d parameters and every input batch in channels-last memory format, which
  cuDNN's tensor-core convolutions read without a transpose (no effect on the CPU, where it would only cost).
- ``compile``: the training forward pass through ``torch.compile`` (the gated layers' sampled gates are
  drawn outside it, so one graph serves every step); evaluation stays eager: its batch sizes differ from
  training's and would each cost a compilation.

``model`` itself is never wrapped: names, densities, checkpoints and purges see the plain module.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ctrlsparse.hparams import HParams
from ctrlsparse.training import distributed


class DeviceForward(nn.Module):
    """Runs ``module`` on channels-last inputs and/or under bf16 autocast; returns float32 logits."""

    def __init__(self, module: nn.Module, amp: bool, channels_last: bool):
        super().__init__()
        self.module = module
        self.amp = amp
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.amp:
            return self.module(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.module(x).float()


def prepare_model(model: nn.Module, hparams: HParams, device: torch.device) -> nn.Module:
    """Moves ``model`` to ``device`` in the memory format the run asks for."""
    model = model.to(device)
    if hparams.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def device_forward(module: nn.Module, hparams: HParams, device: torch.device) -> nn.Module:
    if device.type == "cuda" and (hparams.amp or hparams.channels_last):
        return DeviceForward(module, hparams.amp, hparams.channels_last)
    return module


def training_forward(
    model: nn.Module, hparams: HParams, device: torch.device, processes: distributed.Processes
) -> nn.Module:
    """The training forward pass: DDP (several processes), then the device speed-ups, then torch.compile."""
    module = device_forward(distributed.wrap_ddp(model, device, processes), hparams, device)
    return torch.compile(module) if hparams.compile else module


def eval_forward(model: nn.Module, hparams: HParams, device: torch.device) -> nn.Module:
    """The evaluation forward pass: the device speed-ups, eager (every process evaluates the whole test set)."""
    return device_forward(model, hparams, device)
