"""Trace a model and give every node its op (:mod:`~ctrlsparse.channels.ops`) and output shape.

One forward of an example input through the traced graph (an ``fx.Interpreter``) records shapes and decides
each node's kind and channel dimension from its inputs'. A data-movement node (flatten, cat, chunk, a shuffle's
view / transpose / view) is run a second time on *channel ids* in place of its tracked inputs (each channel's
entries hold a number unique to that tensor and channel), and the ids that come out say which input channel
every output channel is, whatever the op: no per-op index arithmetic, and a chain of views that spreads the
channels over several dims (a channel shuffle) is followed until a node holds them along one dim again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from ctrlsparse.channels import ops
from ctrlsparse.channels.ops import Op
from ctrlsparse.channels.trace import GatedTracer


@dataclass
class ChannelGraph:
    """A traced model: its graph module, its submodules by name, each node's output shape and op."""

    module: fx.GraphModule
    modules: dict[str, nn.Module]
    shapes: dict[fx.Node, tuple[int, ...] | None]
    ops: dict[fx.Node, Op]

    @property
    def nodes(self) -> list[fx.Node]:
        return list(self.module.graph.nodes)

    def width(self, node: fx.Node) -> int | None:
        """The number of channels of a tracked node's output (None: untracked)."""
        op = self.ops[node]
        return op.width if op.tracked else None

    def module_of(self, node: fx.Node) -> nn.Module:
        return self.modules[str(node.target)]

    def constant(self, node: fx.Node) -> Tensor:
        value = self.module
        for part in str(node.target).split("."):
            value = getattr(value, part)
        return value  # type: ignore[return-value]

    def positions(self, node: fx.Node) -> int:
        """Entries per channel of one example of a tracked node's output (H*W of a conv map, T of (N, T, C))."""
        shape = self.shapes[node]
        return math.prod(shape) // (shape[0] * self.ops[node].width)  # type: ignore[index]


@torch.no_grad()
def trace(model: nn.Module, example: Tensor, tracer: fx.Tracer | None = None) -> ChannelGraph:
    """Trace ``model`` (in eval mode; with ``tracer``, default :class:`GatedTracer`) and classify every node on
    ``example``. The model runs once first, so that gated layers' last gates are their eval gates (a traced
    ``L0BatchNorm2d`` mask is a constant of them)."""
    model(example)
    graph = (tracer or GatedTracer()).trace(model)
    module = fx.GraphModule(model, graph)
    layouts = Layouts(module)
    layouts.run(example)
    return ChannelGraph(module, layouts.modules, layouts.shapes, layouts.ops)


class Layouts(fx.Interpreter):
    """Runs the graph once, recording each node's shape and :class:`~ctrlsparse.channels.ops.Op`."""

    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.modules = dict(module.named_modules())
        self.shapes: dict[fx.Node, tuple[int, ...] | None] = {}
        self.ops: dict[fx.Node, Op] = {}
        self.ids: dict[fx.Node, object] = {}  # a composite node's channel ids (a tensor or a tuple of them)
        self.bases: list[int] = []  # first channel id of each node that handed out ids, ascending
        self.owners: list[fx.Node] = []
        self.next_id = 0

    def run_node(self, node: fx.Node):
        value = super().run_node(node)
        self.shapes[node] = tuple(value.shape) if isinstance(value, Tensor) else None
        self.ops[node] = self.classify(node, value)
        return value

    # --- kinds ---
    def op(self, argument) -> Op | None:
        return self.ops.get(argument) if isinstance(argument, fx.Node) else None

    def tracked_at(self, argument, dim: int) -> bool:
        op = self.op(argument)
        return op is not None and op.tracked and op.dim == dim

    def classify(self, node: fx.Node, value) -> Op:
        if node.op == "placeholder":
            return Op("input", 1, value.shape[1]) if isinstance(value, Tensor) and value.dim() >= 2 else Op("input")
        if node.op == "get_attr":
            return Op("constant")
        if node.op == "output":
            return Op("output", operands=tuple(self.tensor_inputs(node)))
        if ops.is_move(node, self.modules):
            with torch.device("cpu"):  # channel ids live on the CPU whatever the model's device (meta, cuda)
                moved = self.move(node)
            if moved is not None:
                return moved
        if ops.is_concat(node) and isinstance(value, Tensor):
            joined = self.joined(node, value)
            if joined is not None:
                return joined
        if not isinstance(value, Tensor):
            return self.query(node)
        module = self.modules[str(node.target)] if node.op == "call_module" else None
        kind = ops.module_kind(module) if module is not None else None
        source = node.args[0] if node.args else None
        rank = value.dim()
        if kind == "gates":
            return Op("gates", module=module)
        if kind == "weight":
            linear = isinstance(module, nn.Linear)
            dim = rank - 1 if linear else 1
            return Op("weight", dim, value.shape[dim], (source,), module, name="linear" if linear else "conv")
        if kind in ("norm", "masked_bn") and self.tracked_at(source, 1):
            return Op(kind, 1, value.shape[1], (source,), module)
        if kind == "gate" and self.tracked_at(source, module.dim % rank):
            return Op("gate", module.dim % rank, value.shape[module.dim % rank], (source,), module)
        if kind == "attention" and all(self.tracked_at(a, len(self.shapes[a]) - 1) for a in node.args[:3]):
            return Op("attention", rank - 1, value.shape[-1], tuple(node.args[:3]), module)
        if kind in ("layer_norm", "masked_ln") and self.tracked_at(source, rank - 1):
            return Op(kind, rank - 1, value.shape[-1], (source,), module)
        if node.op == "call_function" and node.target is torch.nn.functional.layer_norm:
            shape = node.args[1] if len(node.args) > 1 else node.kwargs.get("normalized_shape")
            if len(tuple(shape)) == 1 and self.tracked_at(source, rank - 1):
                return Op("layer_norm", rank - 1, value.shape[-1], (source,), name="functional")
        mapped = self.channelwise(node, value)
        if mapped is not None:
            return mapped
        elementwise = ops.elementwise_kind(node)
        if elementwise is not None:
            combined = self.elementwise(node, value, elementwise)
            if combined is not None:
                return combined
        return self.other(value)

    def other(self, value: Tensor) -> Op:
        """An op the analysis does not know: a fresh tensor, tracked along dim 1 for (N, C) and (N, C, H, W)."""
        return Op("other", 1, value.shape[1]) if value.dim() in (2, 4) else Op("other")

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda arg: found.append(arg) or arg)
        return [arg for arg in found if self.ops[arg].tracked or self.ops[arg].kind == "composite"]

    def query(self, node: fx.Node) -> Op:
        source = node.args[0] if node.args else None
        if self.op(source) is None or not (self.op(source).tracked or self.op(source).kind == "composite"):
            return Op("other")
        if node.op == "call_method" and node.target == "size":
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return Op("batch_size" if dim == 0 else "query", operands=(source,))
        if (node.op == "call_method" and node.target == "dim") or (
            node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim")
        ):
            return Op("query", operands=(source,))
        return Op("other")

    def channelwise(self, node: fx.Node, value: Tensor) -> Op | None:
        """A map (activation, pooling, a reduction over other dims) of a tracked tensor, or None."""
        source = node.args[0] if node.args else None
        op = self.op(source)
        if op is None or not op.tracked:
            return None
        reduction = ops.reduced_dims(node, len(self.shapes[source]))
        if reduction is not None:
            dims, keepdim = reduction
            if op.dim in dims:
                return None
            dim = op.dim if keepdim else op.dim - sum(1 for d in dims if d < op.dim)
            return Op("map", dim, value.shape[dim], (source,), zero_preserving=True)
        preserving = ops.map_kind(node, self.modules)
        if preserving is None or value.dim() != len(self.shapes[source]) or value.shape[op.dim] != op.width:
            return None
        return Op("map", op.dim, op.width, (source,), zero_preserving=preserving)

    def elementwise(self, node: fx.Node, value: Tensor, kind: str) -> Op | None:
        """A sum / product / quotient of broadcast operands: the tracked ones of full width are coupled."""
        rank, dims, operands, sliced = value.dim(), set(), [], []
        for position, argument in enumerate(node.args):
            op = self.op(argument)
            if op is not None and op.tracked:
                aligned = op.dim + rank - len(self.shapes[argument])
                if value.shape[aligned] == op.width:
                    dims.add(aligned)
                    operands.append((position, argument))
        if len(dims) != 1:
            return None
        (dim,) = dims
        width = value.shape[dim]
        for position, argument in enumerate(node.args):
            if any(position == p for p, _ in operands) or not isinstance(argument, fx.Node):
                continue
            shape = self.shapes.get(argument)
            if shape is None:
                continue
            aligned = dim - (rank - len(shape))
            if aligned >= 0 and shape[aligned] == width and width > 1:
                sliced.append((position, aligned))  # a full-width operand the analysis does not track
            elif aligned >= 0 and shape[aligned] not in (1, width):
                return None
        tracked = tuple(argument for _, argument in operands)
        factors = tracked if kind == "product" else tuple(a for p, a in operands if p == 0 and kind == "divide")
        return Op("sum" if kind == "sum" else "product", dim, width, tracked, factors=factors, sliced=tuple(sliced))

    def joined(self, node: fx.Node, value: Tensor) -> Op | None:
        """A concatenation along another dim than its tracked operands' channels: a ``sum`` of them, untracked
        operands (of full width: cat needs it) sliced with the kept channels."""
        parts, along = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(parts, list | tuple) or not isinstance(along, int):
            return None
        tracked = [p for p in parts if self.op(p) is not None and self.op(p).tracked]
        dims, rank = {self.op(p).dim for p in tracked}, value.dim()
        if len(dims) != 1 or any(len(self.shapes[p]) != rank for p in tracked) or dims == {along % rank}:
            return None
        (dim,) = dims
        if any(not isinstance(self.env.get(p), Tensor) for p in parts if p not in tracked):
            return None
        sliced = tuple(((0, i), dim) for i, p in enumerate(parts) if p not in tracked)
        return Op("sum", dim, value.shape[dim], tuple(tracked), sliced=sliced)

    # --- data movement, followed on channel ids ---
    def channel_ids(self, node: fx.Node):
        if node in self.ids:
            return self.ids[node]
        op, shape = self.ops[node], self.shapes[node]
        base = self.next_id
        self.next_id += op.width
        self.bases.append(base)
        self.owners.append(node)
        view = [1] * len(shape)
        view[op.dim] = op.width
        ids = torch.arange(base, base + op.width, dtype=torch.float64).view(view).expand(shape)
        self.ids[node] = ids
        return ids

    def move(self, node: fx.Node) -> Op | None:
        inputs = self.tensor_inputs(node)
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda arg: found.append(arg) or arg)
        if not inputs or any(isinstance(self.env[a], Tensor) and a not in inputs for a in found):
            return None  # an untracked tensor goes in: not followed
        swap = {arg: self.channel_ids(arg) for arg in inputs}
        args = fx.node.map_arg(node.args, lambda arg: swap.get(arg, self.env[arg]))
        kwargs = fx.node.map_arg(node.kwargs, lambda arg: swap.get(arg, self.env[arg]))
        target = "reshape" if node.op == "call_method" and node.target == "view" else node.target  # ids: expanded
        out = getattr(self, node.op)(target, args, kwargs)
        if isinstance(out, tuple | list) and all(isinstance(part, Tensor) for part in out):
            self.ids[node] = out
            return Op("composite", sources=tuple(inputs))
        if not isinstance(out, Tensor):
            return None
        varying = [
            d for d in range(out.dim()) if out.shape[d] > 1 and not torch.equal(out, out.narrow(d, 0, 1).expand_as(out))
        ]
        first = inputs[0]
        if len(varying) == 1:
            dim = varying[0]
        elif not varying and self.op(first).tracked and out.dim() == len(self.shapes[first]):
            dim = self.op(first).dim
        elif not varying and self.op(first).tracked and len(inputs) == 1 and self.is_flatten(first, out):
            dim = self.op(first).dim  # one channel, flattened with what follows it
        else:
            self.ids[node] = out
            return Op("composite", sources=tuple(inputs))
        line = out.movedim(dim, 0).reshape(out.shape[dim], -1)[:, 0].long()
        sources, index = self.locate(line)
        name = ops.move_name(node, self.modules)
        if name in ("view", "reshape") and len(sources) == 1 and self.is_flatten(sources[0], out):
            name = "flatten"
        return Op("move", dim, out.shape[dim], sources=tuple(sources), index=index, name=name)

    def is_flatten(self, source: fx.Node, out: Tensor) -> bool:
        ids = self.channel_ids(source)
        flat = torch.flatten(ids, self.ops[source].dim)
        return flat.shape == out.shape and torch.equal(flat, out)

    def locate(self, ids: Tensor) -> tuple[list[fx.Node], Tensor]:
        """The tracked nodes the channel ``ids`` belong to, and each id's position in their concatenation."""
        bases = torch.tensor(self.bases)
        owner = torch.searchsorted(bases, ids, right=True) - 1
        used = owner.unique().tolist()  # ascending: the sources in the order they handed out ids
        starts = torch.zeros(len(self.bases), dtype=torch.long)
        offset = 0
        for k in used:
            starts[k], offset = offset, offset + self.ops[self.owners[k]].width
        return [self.owners[k] for k in used], starts[owner] + ids - bases[owner]
