"""torch.fx tracers that keep gates, gate points, masked norms and attention as single calls."""

from __future__ import annotations

from torch import fx, nn

from ctrlsparse.channels.heads import Attention
from ctrlsparse.group_gates import GatePoint, MaskedLayerNorm
from ctrlsparse.layers import Gates, L0BatchNorm2d

LEAVES = (Gates, L0BatchNorm2d, GatePoint, MaskedLayerNorm, Attention)


class GatedTracer(fx.Tracer):
    """torch.fx tracer that keeps gate sets, gate points and masked norms as single calls (their forward draws
    gates / takes a mask); everything else as torch.fx does."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, LEAVES) or super().is_leaf_module(module, qualified_name)


class KeepParameterFreeModules(GatedTracer):
    """Plus: a submodule without parameters from outside torch.nn is one call (a leaf), so that its own
    training-mode behaviour (e.g. torchvision's ``StochasticDepth``) survives a trace of the dense model."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if super().is_leaf_module(module, qualified_name):
            return True
        return not isinstance(module, fx.GraphModule) and next(module.parameters(), None) is None
