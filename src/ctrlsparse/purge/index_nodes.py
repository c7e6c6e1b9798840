"""What the purge's index ops are, read off a traced graph with its shapes (``ShapeProp``'s ``tensor_meta``): a
re-indexing along a dim, the purge's zero pad, a selection of a source; the constants and buffers the folds of
:mod:`~ctrlsparse.purge.index_folds` and :mod:`~ctrlsparse.purge.linear_folds` read and add."""

from __future__ import annotations

from collections import Counter

import torch
from torch import Tensor, fx, nn


def rank_of(node: fx.Node) -> int | None:
    """The rank of the tensor ``node`` computes (None: not a tensor, or no shapes propagated)."""
    meta = node.meta.get("tensor_meta")
    return len(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def width_of(node: fx.Node) -> int:
    """The size of the last dim of the tensor ``node`` computes."""
    return int(node.meta["tensor_meta"].shape[-1])


def normalised_dim(node: fx.Node, dim: int) -> int | None:
    """``dim`` of ``node``'s tensor counted from the front (None: unknown rank or not an int)."""
    rank = rank_of(node)
    return None if rank is None or not isinstance(dim, int) else dim % rank


def reindexed(node: fx.Node) -> tuple[fx.Node, int] | None:
    """(source, dim) when ``node`` is ``index_select(source, dim, i)`` or ``cat([source, ...], dim)``."""
    if node.op != "call_function":
        return None
    if node.target is torch.index_select and isinstance(node.args[0], fx.Node):
        dim = normalised_dim(node, node.args[1])
        return None if dim is None else (node.args[0], dim)
    if node.target is torch.cat and node.args and isinstance(node.args[0], list | tuple):
        dim = normalised_dim(node, node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0))
        first = node.args[0][0]
        return None if dim is None or not isinstance(first, fx.Node) else (first, dim)
    return None


def padded_source(node: object, dim: int) -> fx.Node | None:
    """``source`` when ``node`` is the purge's zero pad ``cat([source, zeros_like(...)], dim)`` of one slice."""
    if not isinstance(node, fx.Node) or reindexed(node) is None or node.target is not torch.cat:
        return None
    (source, found), parts = reindexed(node), node.args[0]
    if found != dim or len(parts) != 2 or not is_zero_pad(parts[1]) or "tensor_meta" not in parts[1].meta:
        return None
    return source if parts[1].meta["tensor_meta"].shape[dim] == 1 else None


def selection(module: fx.GraphModule, node: fx.Node) -> tuple[fx.Node, int, Tensor] | None:
    """(source, dim, index) when ``node`` is ``index_select`` of ``source`` along ``dim``, zero-padded first or
    not; an index of ``source``'s width or more is a zero."""
    found = reindexed(node) if node.target is torch.index_select else None
    index = constant_of(module, node.args[2]) if found is not None else None
    if index is None:
        return None
    read, dim = found
    source = padded_source(read, dim) or read
    return (source, dim, index.cpu()) if "tensor_meta" in source.meta else None


def device_of(module: nn.Module) -> torch.device:
    """Where ``module``'s parameters and buffers are (the CPU for a module of none)."""
    return next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))


def called_once(module: fx.GraphModule, kind: type) -> dict[fx.Node, nn.Module]:
    """The call of each ``kind`` module that the graph calls once, on one argument: a fold may change its weights."""
    calls = Counter(str(n.target) for n in module.graph.nodes if n.op == "call_module")
    found = {}
    for node in module.graph.nodes:
        if node.op == "call_module" and calls[str(node.target)] == 1:
            layer = module.get_submodule(str(node.target))
            if type(layer) is kind and len(node.args) == 1 and not node.kwargs:
                found[node] = layer
    return found


def constant_of(module: fx.GraphModule, node: object) -> Tensor | None:
    """The tensor a ``get_attr`` node reads (None for any other node)."""
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    value = fx.Interpreter(module).fetch_attr(str(node.target))
    return value if isinstance(value, Tensor) else None


def is_zero_pad(node: object) -> bool:
    """Whether ``node`` is a ``zeros_like``: the zero slice of the purge's pads."""
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target is torch.zeros_like


def new_buffer(module: fx.GraphModule, name: str, value: Tensor) -> str:
    """Register ``value`` as a buffer of ``module`` under ``name`` (numbered when taken); returns its name."""
    unique, number = name, 0
    while hasattr(module, unique):
        number += 1
        unique = f"{name}_{number}"
    module.register_buffer(unique, value)
    return unique
