"""Architectures from outside the registry: ``torchvision:<builder>`` and ``module:<package.module>:<function>``.

- ``torchvision:resnet18``: any classification builder of ``torchvision.models`` that takes ``num_classes``
  (``weights=None``: random weights; ``arch_weights`` loads a local state dict file instead).
- ``module:mypkg.nets:build``: ``build(num_classes=...)`` from an importable module (e.g. on ``PYTHONPATH``);
  it returns a dense ``nn.Module``.

The dense model is then fitted to the data set's images (:class:`InputFit`) and, for methods that use gates,
gated by :func:`ctrlsparse.models.autogate.gate` (its docstring says which layers get gates).

Inputs that fit: **grayscale images are repeated to three channels** when the model's first convolution reads
three (its weights stay as they are, so pretrained RGB filters apply unchanged); with ``arch_input_size`` the
images are resized (bilinear) to that side inside the model. Without it small images go in at their size: the
torchvision classifiers end in adaptive pooling, so ResNet, MobileNet and EfficientNet run on 8x8 digits (their
32x downsampling leaves 1x1 maps); VGG's five max-pools need 32x32.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ctrlsparse.channels.trace import KeepParameterFreeModules
from ctrlsparse.errors import HParamError
from ctrlsparse.models.autogate import gate
from ctrlsparse.models.factory import LayerFactory

PREFIXES = ("torchvision:", "module:")


class InputFit(nn.Module):
    """Repeat a one-channel image to ``channels`` (0: leave the channels) and/or resize it (bilinear) to ``size``
    x ``size`` (0: leave the size). Fixed when the model is built, so the forward pass traces without branches."""

    def __init__(self, channels: int = 0, size: int = 0):
        super().__init__()
        self.channels, self.size = channels, size

    def forward(self, x: Tensor) -> Tensor:
        if self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


def dense_model(name: str, num_classes: int) -> nn.Module:
    """The dense model an external arch name builds (random weights)."""
    prefix, _, rest = name.partition(":")
    if prefix == "torchvision":
        import torchvision

        builders = torchvision.models.list_models(module=torchvision.models)
        if rest not in builders:
            raise HParamError(
                "arch",
                f"{name!r}: torchvision {torchvision.__version__} has no classification builder {rest!r}; "
                f"choose one of: {', '.join(builders)}",
            )
        return torchvision.models.get_model(rest, weights=None, num_classes=num_classes)
    module_name, _, function = rest.rpartition(":")
    if not module_name or not function:
        raise HParamError("arch", f"{name!r} must read module:<package.module>:<function>, e.g. module:mynets:build")
    try:
        builder = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as error:
        raise HParamError("arch", f"{name!r}: cannot import {function} from {module_name} ({error})") from None
    if "num_classes" not in inspect.signature(builder).parameters:
        raise HParamError("arch", f"{name!r}: {module_name}.{function} must take a num_classes argument")
    return builder(num_classes=num_classes)


def load_weights(model: nn.Module, path: str) -> None:
    """A state dict file into ``model``; a classifier whose shape differs (other classes) keeps its new weights."""
    if not Path(path).is_file():
        raise HParamError("arch_weights", f"{path} is not a file; give a state dict saved with torch.save")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    classifier = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1:]
    for key in sorted(set(own) ^ set(state)):
        where = "is missing from" if key in own else "is not a tensor of the model, but is in"
        raise HParamError("arch_weights", f"{key} {where} {path}; give a state dict of the same architecture")
    for key, value in list(state.items()):
        if value.shape != own[key].shape:
            if classifier and key.rpartition(".")[0] == classifier[0]:
                del state[key]  # the classifier of another number of classes: trained from scratch
                continue
            raise HParamError(
                "arch_weights",
                f"{key} has shape {tuple(value.shape)} in {path}, the model's is {tuple(own[key].shape)}",
            )
    model.load_state_dict(state, strict=False)


def first_conv_channels(model: nn.Module) -> int:
    """Input channels of the model's first Conv2d (registration order), 0 when it has none (an MLP)."""
    return next((module.in_channels for module in model.modules() if isinstance(module, nn.Conv2d)), 0)


def with_input_fit(model: fx.GraphModule, fit: InputFit) -> fx.GraphModule:
    """``model`` with ``fit`` applied to its input first (a submodule ``input_fit`` without parameters)."""
    graph = model.graph
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    model.add_submodule("input_fit", fit)
    with graph.inserting_after(placeholder):
        fitted = graph.call_module("input_fit", (placeholder,))
    placeholder.replace_all_uses_with(fitted, delete_user_cb=lambda user: user is not fitted)
    graph.lint()
    model.recompile()
    return model


def build_external(
    name: str, input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory, weights: str = "", size: int = 0
) -> nn.Module:
    """The model of an external arch name for images of ``input_shape``: dense, or gated when ``layers.gated``."""
    model = dense_model(name, num_classes)
    if weights:
        load_weights(model, weights)
    channels = first_conv_channels(model)
    if channels and input_shape[0] not in (1, channels):
        raise HParamError(
            "arch", f"{name!r} reads {channels}-channel images, the data set has {input_shape[0]} channels"
        )
    repeat = channels if channels > 1 and input_shape[0] == 1 else 0
    fit = InputFit(repeat, size if channels and tuple(input_shape[1:]) != (size, size) else 0)
    example = fit(torch.zeros(2, *input_shape))
    if layers.gated:
        fitted = gate(model, example, layers.droprate_init, layers.structured)
    else:
        fitted = fx.GraphModule(model, KeepParameterFreeModules().trace(model))
    return with_input_fit(fitted, fit)
