"""Where a ``sum``'s sliced operands live (:attr:`~ctrlsparse.channels.ops.Op.sliced`): the argument at a position,
and the parameter an operand is (a layer scale, a position embedding, a class token expanded before a
concatenation), which the purge slices and the cost counts per kept channel."""

from __future__ import annotations

from torch import fx


def argument_at(args: tuple, position: int | tuple[int, int]):
    """The argument at an :attr:`Op.sliced` position (``(0, i)``: item i of the first argument, a list)."""
    return args[position[0]][position[1]] if isinstance(position, tuple) else args[position]


def constant_source(node: fx.Node, shapes: dict) -> fx.Node | None:
    """The get_attr node that ``node`` is, or is expanded from at the same rank (a class token
    ``cls.expand(n, -1, -1)``); None otherwise. ``shapes``: each node's output shape."""
    if node.op == "call_method" and node.target == "expand" and isinstance(node.args[0], fx.Node):
        source = node.args[0]
        same_rank = shapes.get(source) is not None and len(shapes[source]) == len(shapes[node])
        return source if source.op == "get_attr" and same_rank else None
    return node if node.op == "get_attr" else None
