"""Start a gated run from a finished dense run's weights (``--pretrained RUN_DIR``).

Magnitude pruning always does (it prunes that run); a constrained or penalized run does when it is given one (a
*warm start*: compress a trained model instead of training a sparse one from scratch). The gated model takes
every weight of the dense run; its own gates (and the index buffers of the gate points of models gated by
``ctrlsparse.gate``) are all it adds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ctrlsparse.errors import HParamError
from ctrlsparse.group_gates import GatePoint, MaskedLayerNorm
from ctrlsparse.hparams import HParams
from ctrlsparse.layers import Gates
from ctrlsparse.plumbing import paths


def gate_state_keys(model: nn.Module) -> set[str]:
    """The state-dict keys a gated model has and its dense model does not: gates, gate points' indices."""
    keys = set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, Gates):
            keys.add(f"{prefix}log_alpha")
        elif isinstance(module, GatePoint | MaskedLayerNorm):
            keys |= {f"{prefix}{key}" for key, _ in module.named_buffers()}
    return keys


def dense_state(hparams: HParams, device: torch.device) -> dict[str, torch.Tensor]:
    """The final state dict of the dense run ``hparams.pretrained`` (checked: finished, dense, same data and arch)."""
    return dense_checkpoint(hparams, device)["model"]


def dense_checkpoint(hparams: HParams, device: torch.device) -> dict:
    """The checkpoint of the dense run ``hparams.pretrained`` (its ``model`` and its ``hparams``), checked."""
    from ctrlsparse.plumbing.files import read_checkpoint

    if not hparams.pretrained:
        raise HParamError("pretrained", f"{hparams.method} needs the dense run to start from: give its directory")
    checkpoint = paths.checkpoint_path(hparams.pretrained)
    if not paths.summary_path(hparams.pretrained).exists() or not checkpoint.exists():
        raise HParamError(
            "pretrained",
            f"{hparams.pretrained} holds no finished run ({paths.SUMMARY}, {paths.CHECKPOINT}); "
            "train the dense run first",
        )
    state = read_checkpoint(Path(checkpoint), device)
    dense = state["hparams"]
    if (dense["method"], dense["dataset"], dense["arch"]) != ("dense", hparams.dataset, hparams.arch):
        raise HParamError(
            "pretrained",
            f"{hparams.pretrained} is a {dense['method']} run of {dense['dataset']}/{dense['arch']}; "
            f"give a dense run of {hparams.dataset}/{hparams.arch}",
        )
    return state


def load_dense_weights(model: nn.Module, hparams: HParams) -> None:
    """Copy the final weights of the dense run ``hparams.pretrained`` into the gated ``model``."""
    state = dense_state(hparams, next(model.parameters()).device)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - gate_state_keys(model):
        raise HParamError("pretrained", f"{hparams.pretrained}'s weights do not fit arch {hparams.arch!r}")
