"""Attention written out of Linear layers, found for :mod:`~ctrlsparse.channels.attention`: the head splits of
q, k and v (checked on element ids), the scalar factors and dropout on the way to the attention weights, and the
merge of the heads back to channels last."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ctrlsparse.channels import ops
from ctrlsparse.channels.heads import Attention

SOFTMAX = {F.softmax, torch.softmax}
MATMUL = {operator.matmul, torch.matmul, torch.bmm}
UNBIND = {torch.unbind}
SCALAR_OPS = {operator.mul: "mul", operator.truediv: "div", torch.mul: "mul", torch.div: "div"}


def is_sdpa(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is F.scaled_dot_product_attention


def is_matmul(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in MATMUL) or (
        node.op == "call_method" and node.target in ("matmul", "bmm")
    )


@dataclass
class Split:
    """A head split of the channels-last ``source``: its channels ``offset`` to ``offset + heads * dim``, and the
    product of the scalar factors met on the way."""

    source: fx.Node
    offset: int
    heads: int
    dim: int
    factor: float


class WrittenOut:
    """Rewrites ``F.scaled_dot_product_attention`` and ``softmax(q @ kᵀ) @ v`` nodes of ``module`` whose q, k, v are
    head splits (``values``: every node's value on the example)."""

    def __init__(self, module: fx.GraphModule, values: dict[fx.Node, object]):
        self.module, self.graph, self.values = module, module.graph, values
        self.modules = dict(module.named_modules())
        self.count = 0
        self.training = any(m.training for m in self.modules.values() if not isinstance(m, fx.GraphModule))

    def rewrite(self, node: fx.Node) -> None:
        if is_sdpa(node):
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
            given = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
            bias = given.get("attn_mask")
            if given.get("enable_gqa") or (bias is not None and given.get("is_causal")):
                return
            q, k, v = given["query"], given["key"], given["value"]
            dropout, causal, scale = (
                given.get("dropout_p", 0.0),
                bool(given.get("is_causal", False)),
                given.get("scale"),
            )
            factor = 1.0
        else:  # softmax(q @ kᵀ * scale) @ v
            probabilities, v = node.args[0], node.args[1]
            found = self.scores(probabilities)
            if found is None:
                return
            (q, k), factor, dropout, bias = found
            causal, scale = False, None
        if not all(isinstance(x, fx.Node) for x in (q, k, v)) or not isinstance(dropout, float | int):
            return
        splits = [self.split(q, False), self.split(k, not is_sdpa(node)), self.split(v, False)]
        if any(s is None for s in splits) or len({s.heads for s in splits}) != 1:
            return
        sq, sk, sv = splits
        if sq.dim != sk.dim:
            return
        factor *= sq.factor * sk.factor
        if sv.factor != 1.0:
            return
        scale = (1.0 / math.sqrt(sq.dim) if scale is None else float(scale)) if is_sdpa(node) else 1.0
        merged = self.merge(node, sv.heads)
        if merged is None:
            return
        name = self.unique(f"attention_{node.name}")
        attention = Attention(sq.heads, scale * factor, float(dropout), causal)
        self.module.add_submodule(name, attention.train(self.training))
        with self.graph.inserting_before(merged):
            sources = [self.narrowed(s) for s in splits]
            out = self.graph.call_module(name, (*sources, *([bias] if bias is not None else [])))
        merged.replace_all_uses_with(out)
        self.count += 1

    def scores(self, node: fx.Node) -> tuple[tuple[fx.Node, fx.Node], float, float, fx.Node | None] | None:
        """From the attention weights back to ``q @ kᵀ``: ((q, kᵀ), the scalar factors' product, dropout p, an
        additive mask or bias added before the factors, or None)."""
        factor, dropout, softmax, bias = 1.0, 0.0, False, None
        while True:
            if not isinstance(node, fx.Node):
                return None
            added = self.added(node) if softmax and bias is None and factor == 1.0 else None
            if added is not None:  # scores + mask (a mask added after a scale: the scale would apply to it too)
                node, bias = added
                continue
            if node.op == "call_module" and isinstance(self.modules.get(str(node.target)), nn.Dropout):
                dropout = self.modules[str(node.target)].p
            elif node.op == "call_function" and node.target is F.dropout:
                dropout = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
            elif (node.op == "call_function" and node.target in SOFTMAX) or (
                node.op == "call_method" and node.target == "softmax"
            ):
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                rank = self.values[node].dim()
                if softmax or dim is None or dim % rank != rank - 1 or node.kwargs.get("dtype") is not None:
                    return None
                softmax = True
            elif self.scalar(node) is not None:
                factor *= self.scalar(node)
            elif is_matmul(node) and softmax:
                return (node.args[0], node.args[1]), factor, dropout, bias
            else:
                return None
            node = self.tensor_argument(node)

    def added(self, node: fx.Node) -> tuple[fx.Node, fx.Node] | None:
        """(the scores, the mask) of ``scores + mask``, where the scores lead back to a matmul through scalars."""
        is_add = (node.op == "call_function" and node.target in (operator.add, torch.add)) or (
            node.op == "call_method" and node.target == "add"
        )
        if not is_add or len(node.args) != 2 or node.kwargs:
            return None
        for scores, mask in (node.args, node.args[::-1]):
            if not (isinstance(mask, fx.Node) and isinstance(self.values.get(mask), Tensor)):
                continue
            found = scores
            while isinstance(found, fx.Node) and self.scalar(found) is not None:
                found = self.tensor_argument(found)
            if isinstance(found, fx.Node) and is_matmul(found):
                return scores, mask
        return None

    def number(self, argument) -> float | None:
        """A Python number, given or computed from shapes (``C ** -0.5`` with C from ``x.shape``)."""
        value = self.values.get(argument) if isinstance(argument, fx.Node) else argument
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def scalar(self, node: fx.Node) -> float | None:
        """The factor of ``x * s`` / ``x / s`` / ``s * x`` with a number s (None: not such an op)."""
        is_function = node.op == "call_function" and node.target in SCALAR_OPS
        is_method = node.op == "call_method" and node.target in ("mul", "div")
        if not (is_function or is_method) or len(node.args) != 2 or node.kwargs:
            return None
        kind = SCALAR_OPS[node.target] if is_function else node.target
        a, b = node.args
        if isinstance(self.values.get(a), Tensor) and self.number(b) is not None:
            return self.number(b) if kind == "mul" else 1.0 / self.number(b)
        if is_function and kind == "mul" and isinstance(self.values.get(b), Tensor) and self.number(a) is not None:
            return self.number(a)
        return None

    def tensor_argument(self, node: fx.Node) -> fx.Node | None:
        """The one node argument of a move / unbind / scalar op that carries the data."""
        if self.scalar(node) is not None:
            a = node.args[0]
            return a if isinstance(self.values.get(a), Tensor) else node.args[1]
        first = node.args[0] if node.args else None
        if isinstance(first, list | tuple):
            return None
        return first if isinstance(first, fx.Node) else None

    def walkable(self, node: fx.Node) -> bool:
        if self.scalar(node) is not None:
            return True
        if node.op == "call_function" and node.target in UNBIND or node.op == "call_method" and node.target == "unbind":
            return True
        if node.op == "call_module" and isinstance(self.modules.get(str(node.target)), nn.Identity):
            return True  # timm's q_norm / k_norm when off
        return ops.is_move(node, self.modules) and not (
            node.op == "call_function" and node.target in (torch.cat, torch.concat)
        )

    def split(self, node: fx.Node, swapped: bool) -> Split | None:
        """The head split that ``node`` (N, ..., heads, T, d) is of a channels-last source, or None: the farthest
        source back along the chain of moves that fits."""
        value = self.values.get(node)
        if not isinstance(value, Tensor) or value.dim() < 3:
            return None
        path = [node]
        while self.walkable(path[-1]):
            previous = self.tensor_argument(path[-1])
            if previous is None:
                break
            path.append(previous)
        for i in range(len(path) - 1, 0, -1):
            found = self.split_from(path[i], path[:i][::-1], swapped)
            if found is not None:
                return found
        return None

    def split_from(self, source: fx.Node, chain: list[fx.Node], swapped: bool) -> Split | None:
        base = self.values.get(source)
        if not isinstance(base, Tensor) or base.dim() < 2:
            return None
        ids = torch.arange(base.numel(), dtype=torch.float64, device="cpu").view(base.shape)
        out = self.replay(chain, source, ids)
        if not isinstance(out, Tensor) or out.dim() < 3:
            return None
        if swapped:
            out = out.transpose(-2, -1)
        heads, dim, channels = out.shape[-3], out.shape[-1], base.shape[-1]
        offset = int(out.flatten()[0].item()) % channels
        if offset + heads * dim > channels:
            return None
        expected = ids[..., offset : offset + heads * dim].unflatten(-1, (heads, dim)).transpose(-3, -2)
        if expected.shape != out.shape or not torch.equal(expected, out):
            return None
        factor = math.prod(self.scalar(n) for n in chain if self.scalar(n) is not None)
        return Split(source, offset, heads, dim, factor)

    def replay(self, chain: list[fx.Node], source: fx.Node, ids: Tensor):
        env = {source: ids}
        for node in chain:
            args = fx.node.map_arg(node.args, lambda n: env.get(n, self.values.get(n)))
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env.get(n, self.values.get(n)))
            if self.scalar(node) is not None:
                env[node] = env[self.tensor_argument(node)]
            elif node.op == "call_function":
                env[node] = node.target(*args, **kwargs)
            elif node.op == "call_method":
                env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                env[node] = self.modules[str(node.target)](*args, **kwargs)
        return env[chain[-1]]

    def merge(self, node: fx.Node, heads: int) -> fx.Node | None:
        """The first node after the attention output (..., heads, T, d) that holds it as (..., T, heads * d)."""
        value = self.values[node]
        if not isinstance(value, Tensor) or value.dim() < 3:
            return None
        ids = torch.arange(value.numel(), dtype=torch.float64, device="cpu").view(value.shape)
        expected = ids.transpose(-3, -2).flatten(-2)
        chain, current = [], node
        while True:
            users = [u for u in current.users if not self.shape_query(u)]  # x.size() for the merged shape: not data
            if len(users) != 1:
                return None
            (user,) = users
            if not ops.is_move(user, self.modules) or self.tensor_argument(user) is not current:
                return None
            chain.append(user)
            out = self.replay(chain, node, ids)
            if isinstance(out, Tensor) and out.shape == expected.shape and torch.equal(out, expected):
                return user
            current = user

    @staticmethod
    def shape_query(node: fx.Node) -> bool:
        return (node.op == "call_method" and node.target in ("size", "dim")) or (
            node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim")
        )

    def narrowed(self, split: Split) -> fx.Node:
        width = self.values[split.source].shape[-1]
        if split.offset == 0 and split.heads * split.dim == width:
            return split.source
        return self.graph.call_function(torch.narrow, (split.source, -1, split.offset, split.heads * split.dim))

    def unique(self, name: str) -> str:
        taken = {key for key, _ in self.module.named_modules()}
        unique, suffix = name, 1
        while unique in taken:
            unique, suffix = f"{name}_{suffix}", suffix + 1
        return unique
