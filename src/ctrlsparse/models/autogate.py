"""``gate(model, example_input)``: a gated copy of an arbitrary ``nn.Module`` (torchvision's or yours).

The model is traced with torch.fx and its channels coupled by the one channel analysis
(:class:`ctrlsparse.channels.coupling.Coupling`): every set of channels that can only go together (the same
channel of a residual stream in the stem, every block's last conv, every downsample and every reader; a
concatenation's slices; a grouped or depthwise conv's groups with their inputs and outputs; a squeeze-excitation's
scale with the channels it scales; a LayerNorm's channels) shares one gate, so every channel that can go can go.
Sets of channels that appear in the same layers form one :class:`~ctrlsparse.group_gates.GateGroup`
(``gates.<first layer>``), called once at the top of the forward. Then:

- a :class:`~ctrlsparse.group_gates.GatePoint` multiplies each tensor by its channels' gates in front of every
  reader that mixes channels (a conv, a Linear, a flatten, an op the analysis does not know), so a closed
  channel reaches nothing that would mix it into others; the purge then removes it everywhere, exactly;
- every LayerNorm over gated channels becomes a :class:`~ctrlsparse.group_gates.MaskedLayerNorm` (statistics over
  the open channels, as the purged LayerNorm computes them).

A group's ``group_size`` (its weight in the density) is what closing one of its gates alone removes: the
derivative of the expected parameter count at all-open (:class:`ctrlsparse.cost.ExpectedCost`).

Weights, biases and BatchNorm statistics are copied unchanged under their names (no 1 / (1 - d) rescaling,
unlike the hand-written archs): with the gates open (eval gate 1, e.g. log alpha >= 2.4, or ``droprate_init``
<= 0.08) the gated model computes exactly what the original does. Submodules without parameters that torch.nn
does not define (e.g. torchvision's ``StochasticDepth``) are kept as single calls, so their own training-mode
behaviour survives the trace. With ``structured=False`` every Conv (groups 1) and Linear called once is gated per
weight instead (nothing is coupled: no channel is removed).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import fx, nn

from ctrlsparse.channels import ChannelGraph, trace
from ctrlsparse.channels.attention import canonical_attention, load_multihead_state
from ctrlsparse.channels.coupling import Coupling, GroupPlan
from ctrlsparse.channels.trace import KeepParameterFreeModules
from ctrlsparse.cost import ExpectedCost
from ctrlsparse.density_targets import GATE_GROUP_PREFIX
from ctrlsparse.group_gates import GateGroup, GatePoint, MaskedLayerNorm, set_channels_per_gate_
from ctrlsparse.layers import GatedLayer, L0Conv2d, L0Linear, gated_layers


def trace_dense(model: nn.Module, example_input: torch.Tensor) -> ChannelGraph:
    """``model`` (left untouched) traced in eval mode into a graph module of its own copies of the submodules,
    its attention rewritten into :class:`~ctrlsparse.channels.heads.Attention` (:mod:`ctrlsparse.channels.attention`)."""
    if gated_layers(model):
        raise ValueError(f"the model already has gated layers ({gated_layers(model)[0][0]}); give the dense model")
    copied = copy.deepcopy(model).eval()
    tracer = KeepParameterFreeModules()
    rewritten = canonical_attention(fx.GraphModule(copied, tracer.trace(copied)), example_input)
    return trace(rewritten if rewritten is not None else copied, example_input, tracer)


def gate(
    model: nn.Module, example_input: torch.Tensor, droprate_init: float = 0.5, structured: bool = True
) -> fx.GraphModule:
    """A gated copy of ``model`` (see the module docstring); ``model`` is untouched.

    ``example_input`` is one input batch; it fixes the shapes the trace sees. ``droprate_init`` sets the gates'
    initial log alpha; ``structured=False`` gates every Conv / Linear per weight. The copy is in the mode
    ``model`` was in (train or eval).
    """
    graph = trace_dense(model, example_input)
    if not structured:
        gated = gate_per_weight(graph, droprate_init)
        load_multihead_state(gated)
        return gated.train(model.training)
    coupling = Coupling(graph)
    plans = coupling.groups()
    gated = with_gate_groups(graph, coupling, plans, droprate_init)
    if example_input.device.type == "meta":  # a model without data, to list its gate groups (the preflight)
        load_multihead_state(gated)
        return gated.train(model.training)
    cost = ExpectedCost(gated, example_input)
    unplaced = unplaced_groups(cost.graph, gated)
    while unplaced:  # gate points the analysis of the gated model cannot follow: those channels stay dense
        plans = [plan for k, plan in enumerate(plans) if k not in unplaced]
        graph = trace_dense(model, example_input)
        gated = with_gate_groups(graph, Coupling(graph), plans, droprate_init)
        cost = ExpectedCost(gated, example_input)
        unplaced = unplaced_groups(cost.graph, gated)
    sizes = removed_parameters(cost)
    if any(len(set(part.tolist())) > 1 for part in sizes):  # not seen in torchvision's families
        plans = uniform_plans(plans, sizes)
        graph = trace_dense(model, example_input)
        gated = with_gate_groups(graph, Coupling(graph), plans, droprate_init)
        sizes = removed_parameters(ExpectedCost(gated, example_input))
    for (_, group), part in zip(gated_layers(gated), sizes, strict=True):
        group.group_size = int(part[0]) if len(part) else 1
    set_channels_per_gate_(gated)
    load_multihead_state(gated)
    return gated.train(model.training)


def uniform_plans(plans: list[GroupPlan], sizes: list[torch.Tensor]) -> list[GroupPlan]:
    """Each group split into groups whose gates remove the same number of parameters (a group's density weight
    is one number), in order of that number."""
    split = []
    for plan, part in zip(plans, sizes, strict=True):
        for k, size in enumerate(sorted(set(part.tolist()))):
            components = [c for c, s in zip(plan.components, part.tolist(), strict=True) if s == size]
            split.append(GroupPlan(plan.name if k == 0 else f"{plan.name}.{k}", components, plan.kind))
    return split


def unplaced_groups(graph: ChannelGraph, gated: nn.Module) -> set[int]:
    """The gate groups (by position) read by a gate point or masked LayerNorm that the channel analysis of the
    gated model does not place on a channel dim (seen in MaxViT's window partitions): gated there, the purge
    and the cost could not follow them."""
    position = {id(group): k for k, (_, group) in enumerate(gated_layers(gated))}
    found: set[int] = set()
    for node, op in graph.ops.items():
        module = graph.modules.get(str(node.target)) if node.op == "call_module" else None
        if isinstance(module, GatePoint | MaskedLayerNorm) and op.kind not in ("gate", "masked_ln"):
            for arg in node.args:
                target = graph.modules.get(str(arg.target)) if isinstance(arg, fx.Node) else None
                if id(target) in position:
                    found.add(position[id(target)])
    return found


def removed_parameters(cost: ExpectedCost) -> list[torch.Tensor]:
    """Per gate group, the parameters each of its gates removes when it alone closes (rounded)."""
    removed = cost.removed_by_each_gate("params").round().long()
    return list(removed.split(cost.counts))


def with_gate_groups(
    graph: ChannelGraph, coupling: Coupling, plans: list[GroupPlan], droprate_init: float
) -> fx.GraphModule:
    """``graph``'s module with one GateGroup per plan, gate points in front of channel-mixing readers and masked
    LayerNorms (the graph is changed in place; ``coupling`` is ``graph``'s)."""
    module, g = graph.module, graph.module.graph
    device = next((p.device for p in module.parameters()), None)
    first = next(node for node in g.nodes if node.op != "placeholder")
    group_nodes = []
    for plan in plans:
        name = unique_name(module, GATE_GROUP_PREFIX + plan.name.replace(".", "_"))
        module.add_submodule(name, GateGroup(len(plan.components), 1, droprate_init, device=device, kind=plan.kind))
        with g.inserting_before(first):
            group_nodes.append(g.call_module(name, ()))
    where = {component: (k, i) for k, plan in enumerate(plans) for i, component in enumerate(plan.components)}
    sizes = [len(plan.components) for plan in plans]
    for tensor, readers in coupling.need_zero.items():
        found = gates_of(coupling, tensor, where, sizes)
        if found is None:
            continue
        used, index = found
        dim = graph.ops[tensor].dim
        point = unique_name(module, f"gate_points.{tensor.name}")
        module.add_submodule(point, GatePoint(dim, index))
        with g.inserting_before(min(readers, key=order(g))):
            gated = g.call_module(point, (tensor, *[group_nodes[k] for k in used]))
        for reader in readers:
            reader.replace_input_with(tensor, gated)
    for node in list(g.nodes):
        if graph.ops.get(node) is not None and graph.ops[node].kind == "layer_norm":
            found = gates_of(coupling, node, where, sizes)
            if found is not None:
                mask_layer_norm(graph, node, [group_nodes[k] for k in found[0]], found[1])
    g.lint()
    module.recompile()
    return module


def order(graph: fx.Graph):
    positions = {node: i for i, node in enumerate(graph.nodes)}
    return lambda node: positions[node]


def gates_of(
    coupling: Coupling, node: fx.Node, where: dict[int, tuple[int, int]], sizes: list[int]
) -> tuple[list[int], torch.Tensor | None] | None:
    """(groups used, index into their concatenated gates and a final 1) for ``node``'s channels; None: no gate.
    ``where``: component -> (group, gate); ``sizes``: gates per group."""
    components = coupling.component[coupling.elements(node)]
    channels = [where.get(int(c)) for c in components]
    if all(found is None for found in channels):
        return None
    used = list(dict.fromkeys(found[0] for found in channels if found is not None))
    if (
        len(used) == 1
        and all(found == (used[0], i) for i, found in enumerate(channels))
        and len(channels) == sizes[used[0]]
    ):
        return used, None  # one group, every channel in order: no index
    starts, start = {}, 0
    for k in used:
        starts[k], start = start, start + sizes[k]
    index = [start if found is None else starts[found[0]] + found[1] for found in channels]
    return used, torch.tensor(index, device="cpu")


def mask_layer_norm(graph: ChannelGraph, node: fx.Node, groups: list[fx.Node], index: torch.Tensor | None) -> None:
    """Replace a LayerNorm call (module or F.layer_norm) by a MaskedLayerNorm over the gated channels."""
    module, g = graph.module, graph.module.graph
    if node.op == "call_module":
        layer = graph.module_of(node)
        with g.inserting_before(node):
            weight = g.get_attr(f"{node.target}.weight") if layer.weight is not None else None
            bias = g.get_attr(f"{node.target}.bias") if getattr(layer, "bias", None) is not None else None
        eps, x = layer.eps, node.args[0]
    else:  # F.layer_norm(x, normalized_shape, weight, bias, eps)
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        given = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
        x, weight, bias, eps = given["input"], given.get("weight"), given.get("bias"), given.get("eps", 1e-5)
    name = unique_name(module, f"masked_norms.{node.name}")
    module.add_submodule(name, MaskedLayerNorm(eps, index))
    with g.inserting_before(node):
        masked = g.call_module(name, (x, weight, bias, *groups))
    node.replace_all_uses_with(masked)
    g.erase_node(node)


def unique_name(module: nn.Module, name: str) -> str:
    taken = {key for key, _ in module.named_modules()}
    unique, suffix = name, 1
    while unique in taken:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    return unique


def gate_per_weight(graph: ChannelGraph, droprate_init: float) -> fx.GraphModule:
    """Every Conv2d (groups 1) and Linear called once, gated per weight (unstructured)."""
    module = graph.module
    calls = Counter(str(n.target) for n in module.graph.nodes if n.op == "call_module")
    for node in module.graph.nodes:
        if node.op != "call_module" or calls[str(node.target)] != 1:
            continue
        layer = graph.module_of(node)
        if isinstance(layer, nn.Linear):
            module.add_submodule(str(node.target), gated_linear(layer, droprate_init, False))
        elif type(layer) is nn.Conv2d and layer.groups == 1:
            module.add_submodule(str(node.target), gated_conv(layer, droprate_init, False))
    module.recompile()
    return module


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
