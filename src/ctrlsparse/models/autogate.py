"""``gate(model, example_input)``: a gated copy of an arbitrary CNN/MLP ``nn.Module`` (torchvision's or yours).

The model is traced with torch.fx and its nodes sorted by the purge's own analysis
(:func:`ctrlsparse.purge.graph.kind`: weight / batchnorm / channelwise / add / flatten / other). Then:

- **Linear layers** on (N, F) inputs get one gate per *input feature* (``L0Linear``, as the MLP's input layer):
  a closed feature's weight column goes, whatever produced the feature.
- **Conv2d layers** (``groups == 1``) get one gate per *output channel* (``L0Conv2d``) when a closed channel is
  removable for good: followed through BatchNorm, zero-preserving channel-wise ops (ReLU, SiLU, pooling,
  dropout, ...), flattens and depthwise convolutions, the conv's output reaches only layers that read it as
  their input (a Conv2d or Linear). The BatchNorms on that way become ``L0BatchNorm2d`` masked by the conv's open
  channels, so a closed channel stays exactly zero; a **depthwise conv** on that way follows the conv's gate (it
  stays dense, and the BatchNorm after it is masked by the same gates).
- **Residual adds: channels summed by an add stay ungated.** A conv whose output reaches an add (a ResNet's stem,
  every block's last conv and its downsample; a MobileNet block's projection when the block is residual) is left
  dense, as is a conv whose output reaches an op the analysis does not know (a squeeze-excitation multiply, a
  concatenation, the model's output). So no gate has to be shared between layers, and every gated group is one
  layer's filter or column.

Weights, biases and BatchNorm statistics are copied unchanged (no 1 / (1 - d) rescaling, unlike the
hand-written archs): with the gates open (eval gate 1, e.g. log alpha >= 2.4, or ``droprate_init`` <= 0.08) the
gated model computes exactly what the original does. Submodules keep their qualified names (``layer1.0.conv1``),
so the gated model's state dict is the original's plus the gates' ``log_alpha``. Submodules without parameters
that torch.nn does not define (e.g. torchvision's ``StochasticDepth``) are kept as single calls, so their own
training-mode behaviour survives the trace.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import fx, nn

from ctrlsparse.layers import GatedLayer, L0BatchNorm2d, L0Conv2d, L0Linear, gated_layers
from ctrlsparse.purge.graph import GatedTracer, Traced, kind, trace


class KeepParameterFreeModules(GatedTracer):
    """The purge's tracer, plus: a submodule without parameters from outside torch.nn is one call (a leaf)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if super().is_leaf_module(module, qualified_name):
            return True
        return not isinstance(module, fx.GraphModule) and next(module.parameters(), None) is None


def trace_model(model: nn.Module, example_input: torch.Tensor) -> Traced:
    """``model`` (left untouched) traced in eval mode into a graph module of its own copies of the submodules."""
    if gated_layers(model):
        raise ValueError(f"the model already has gated layers ({gated_layers(model)[0][0]}); give the dense model")
    source = copy.deepcopy(model).eval()
    return trace(source, example_input, KeepParameterFreeModules())


class GatingPlan:
    """Which weight layers of a traced model get gates, and which BatchNorms each gated conv masks."""

    def __init__(self, traced: Traced):
        self.traced = traced
        nodes = list(traced.module.graph.nodes)
        self.kinds = {node: kind(node, traced) for node in nodes}
        calls = Counter(str(node.target) for node in nodes if node.op == "call_module")
        self.linears: list[fx.Node] = []
        self.convs: dict[fx.Node, list[fx.Node]] = {}  # gated conv -> the BatchNorm calls it masks
        for node in nodes:
            if self.kinds[node] != "weight" or calls[str(node.target)] != 1:
                continue  # a module called from two places keeps its weights as they are
            module = traced.modules[str(node.target)]
            if isinstance(module, nn.Linear):
                self.linears.append(node)
            elif module.groups == 1:
                masked = self._removable_through(node, calls)
                if masked is not None:
                    self.convs[node] = masked

    def _removable_through(self, conv: fx.Node, calls: Counter) -> list[fx.Node] | None:
        """The BatchNorm calls between ``conv`` and the layers that read it, or None when its output also reaches
        an add, an unknown op or the output (see the module docstring)."""
        masked, stack, seen = [], [conv], set()
        while stack:
            node = stack.pop()
            for user in node.users:
                if user in seen:
                    continue
                seen.add(user)
                user_kind = self.kinds[user]
                reads_it = bool(user.args) and user.args[0] is node
                if user_kind == "batch_size":
                    continue
                if user_kind == "weight" and reads_it:
                    continue
                if user_kind == "depthwise" and reads_it:
                    if self.traced.modules[str(user.target)].bias is None and calls[str(user.target)] == 1:
                        stack.append(user)  # the depthwise conv follows the gate (zero stays zero)
                    continue  # else it is a layer that reads the channel (zero becomes its bias)
                if user_kind == "batchnorm" and reads_it and calls[str(user.target)] == 1:
                    masked.append(user)
                    stack.append(user)
                elif user_kind in ("channelwise", "flatten") and reads_it:
                    stack.append(user)
                else:
                    return None
        return masked


def gate(
    model: nn.Module, example_input: torch.Tensor, droprate_init: float = 0.5, structured: bool = True
) -> fx.GraphModule:
    """A gated copy of ``model`` (see the module docstring for which layers get gates); ``model`` is untouched.

    ``example_input`` is one input batch; it fixes the shapes the trace sees. ``droprate_init`` sets the gates'
    initial log alpha (``L0Linear``/``L0Conv2d``); ``structured=False`` gates the same layers per weight.
    The copy is in the mode ``model`` was in (train or eval).
    """
    traced = trace_model(model, example_input)
    plan = GatingPlan(traced)
    module, graph = traced.module, traced.module.graph
    for node in plan.linears:
        module.add_submodule(
            str(node.target), gated_linear(traced.modules[str(node.target)], droprate_init, structured)
        )
    for conv, batchnorms in plan.convs.items():
        module.add_submodule(str(conv.target), gated_conv(traced.modules[str(conv.target)], droprate_init, structured))
        for bn in batchnorms:
            module.add_submodule(str(bn.target), masked_batchnorm(traced.modules[str(bn.target)]))
            with graph.inserting_before(bn):
                active = graph.call_method("active_channels", (graph.get_attr(str(conv.target)),))
            bn.args = (bn.args[0], active)
    graph.lint()
    module.recompile()
    return module.train(model.training)


def gated_linear(linear: nn.Linear, droprate_init: float, structured: bool) -> L0Linear:
    new = L0Linear(
        linear.in_features,
        linear.out_features,
        linear.bias is not None,
        droprate_init,
        structured,
        device=linear.weight.device,
    )
    return _copy_weights(linear, new)


def gated_conv(conv: nn.Conv2d, droprate_init: float, structured: bool) -> L0Conv2d:
    new = L0Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        conv.bias is not None,
        droprate_init,
        structured,
        device=conv.weight.device,
    )
    new.dilation, new.padding_mode = conv.dilation, conv.padding_mode
    return _copy_weights(conv, new)


def _copy_weights(dense: nn.Module, new: GatedLayer) -> GatedLayer:
    new = new.to(dtype=dense.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(dense.weight)
        if dense.bias is not None:
            new.bias.copy_(dense.bias)
    return new.train(dense.training)


def masked_batchnorm(bn: nn.BatchNorm2d) -> L0BatchNorm2d:
    """An ``L0BatchNorm2d`` with ``bn``'s parameters and running statistics."""
    device = next(iter(bn.state_dict().values())).device
    new = L0BatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device=device)
    new.load_state_dict(bn.state_dict())
    return new.train(bn.training)
