"""Attention rewritten into :class:`~ctrlsparse.channels.heads.Attention` before the channel analysis.

Three forms are rewritten in a traced dense model (:func:`canonical_attention`), so that the op table needs one
rule for attention whatever the model wrote:

- ``nn.MultiheadAttention`` called without masks, bias_k / bias_v or zero attention (torchvision's ViT): its
  ``in_proj`` becomes three ``nn.Linear`` (``<name>.q``, ``.k``, ``.v``, the in_proj rows copied), then
  ``<name>.attention`` and its own ``out_proj``. The parameters are the same numbers under new names (the gated
  model loads the MultiheadAttention's state dict too, :func:`load_multihead_state`: warm starts).
- attention written out of Linear layers: ``F.scaled_dot_product_attention(q, k, v)`` (``attn_mask``,
  ``is_causal`` and ``scale`` kept), or ``softmax(q @ kᵀ x scale + mask) @ v`` with scalar factors and dropout
  anywhere on the way and an optional additive mask or bias added after them (the Attention's score bias),
  where q, k and v are *head splits* of channels-last tensors and the output is merged back. A head split is any
  chain of views, reshapes, permutes, transposes, unbinds / chunks and indexing from a (..., T, C) tensor that
  puts channel ``offset + h * d + j`` at head ``h``, dim ``j`` (a fused qkv Linear: three offsets); the chain is
  checked by running it on element ids, not by matching op names, as the rest of the analysis follows moves. The
  source is narrowed to its ``heads * d`` channels (``torch.narrow``, a move the analysis follows)
  (:mod:`~ctrlsparse.channels.head_splits`).
- torchvision's Swin: ``shifted_window_attention`` and ``_patch_merging_pad`` (:mod:`~ctrlsparse.channels.windows`).

Anything else (MultiheadAttention's masks, a mask applied otherwise, attention weights that are used, another
layout) is left as it was: the analysis then reads those tensors whole, exactly, without gating the heads; so are
torch.nn's own ``TransformerEncoderLayer`` / ``TransformerDecoderLayer`` / ``Transformer``, which torch.fx keeps
as single calls (torch.nn modules are leaves of its trace, and their forward branches on tensor properties). The
rewritten model is checked on the example input; if its output differs from the original's (atol 1e-5 relative),
the rewrite is undone with a warning.
"""

from __future__ import annotations

import math
import operator
import warnings

import torch
from torch import Tensor, fx, nn

from ctrlsparse.channels.head_splits import WrittenOut, is_matmul, is_sdpa
from ctrlsparse.channels.heads import Attention
from ctrlsparse.channels.windows import Windows, is_function


class Values(fx.Interpreter):
    """Every node's value on one example."""

    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.values: dict[fx.Node, object] = {}

    def run_node(self, node: fx.Node):
        value = super().run_node(node)
        self.values[node] = value
        return value


def canonical_attention(module: fx.GraphModule, example: Tensor) -> fx.GraphModule | None:
    """``module`` (a traced dense model) with its attention in :class:`Attention` form (see above), or None when
    it has no attention this rewrites. ``module`` itself may be changed either way: pass a copy."""
    if not any(is_multihead(module, n) or is_sdpa(n) or is_matmul(n) or is_swin(n) for n in module.graph.nodes):
        return None
    values = Values(module)
    with torch.no_grad():
        reference = values.run(example)
    rewriter = Rewriter(module, values.values)
    written = WrittenOut(module, values.values)
    windows = Windows(module, values.values)
    for node in list(module.graph.nodes):
        if node not in values.values:
            continue  # added by an earlier rewrite
        if is_multihead(module, node):
            rewriter.multihead(node)
        elif is_sdpa(node) or is_matmul(node):
            written.rewrite(node)
        elif is_function(node, "shifted_window_attention"):
            windows.attention(node)
        elif is_function(node, "_patch_merging_pad"):
            windows.patch_merging(node)
    if not rewriter.count + written.count + windows.count:
        return None
    module.graph.eliminate_dead_code()
    module.graph.lint()
    module.recompile()
    module.delete_all_unused_submodules()
    if example.device.type == "meta":
        return module
    with torch.no_grad():
        output = module(example)
    if not same(output, reference):
        warnings.warn(
            "ctrlsparse: rewriting the attention changed the model's output; attention heads are left ungated",
            stacklevel=2,
        )
        return None
    return module


def same(a, b) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and bool(((a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max().item())).item())
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return True


def is_swin(node: fx.Node) -> bool:
    return is_function(node, "shifted_window_attention") or is_function(node, "_patch_merging_pad")


def is_multihead(module: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(module.get_submodule(str(node.target)), nn.MultiheadAttention)


def from_multihead(state: dict, prefix: str) -> None:
    """An ``nn.MultiheadAttention``'s entries of ``state`` (under ``prefix``) as its rewrite's: ``in_proj_weight`` /
    ``in_proj_bias`` (or the ``q/k/v_proj_weight`` of other key and value widths) into ``q``, ``k``, ``v``."""
    for kind in ("weight", "bias"):
        packed = state.pop(f"{prefix}in_proj_{kind}", None)
        for name, part in zip("qkv", packed.chunk(3) if packed is not None else (), strict=False):
            state[f"{prefix}{name}.{kind}"] = part
    for name in "qkv":
        if f"{prefix}{name}_proj_weight" in state:
            state[f"{prefix}{name}.weight"] = state.pop(f"{prefix}{name}_proj_weight")


def load_multihead_state(model: nn.Module) -> None:
    """Let ``model`` (gated, its nn.MultiheadAttention rewritten: ``<path>.q/.k/.v/.attention/.out_proj``) load the
    state dict of the model it was made from too, so that a dense run's weights start a gated run (warm starts)."""
    paths = []
    for name, module in model.named_modules():
        parent = name.rpartition(".")[0]
        if isinstance(module, Attention) and name.endswith("attention"):
            owner = model.get_submodule(parent)
            if all(isinstance(getattr(owner, c, None), nn.Linear) for c in ("q", "k", "v", "out_proj")):
                paths.append(f"{parent}." if parent else "")
    if paths:

        def hook(_module: nn.Module, state: dict, prefix: str, *args) -> None:
            for path in paths:
                from_multihead(state, prefix + path)

        model.register_load_state_dict_pre_hook(hook)


class Rewriter:
    def __init__(self, module: fx.GraphModule, values: dict[fx.Node, object]):
        self.module, self.graph, self.values = module, module.graph, values
        self.count = 0

    # --- nn.MultiheadAttention ---
    def multihead(self, node: fx.Node) -> None:
        layer: nn.MultiheadAttention = self.module.get_submodule(str(node.target))
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
        given = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
        if any(given.get(k) is not None for k in ("key_padding_mask", "attn_mask")) or given.get("is_causal"):
            return
        if layer.bias_k is not None or layer.add_zero_attn:
            return
        users = list(node.users)
        if not all(u.op == "call_function" and u.target is operator.getitem for u in users):
            return
        if any(u.args[1] != 0 and u.users for u in users):
            return  # the attention weights are used
        e, heads = layer.embed_dim, layer.num_heads
        weight = layer.in_proj_weight
        weights = (
            weight.chunk(3) if weight is not None else (layer.q_proj_weight, layer.k_proj_weight, layer.v_proj_weight)
        )
        biases = layer.in_proj_bias.chunk(3) if layer.in_proj_bias is not None else (None,) * 3
        container = nn.Module()
        for name, w, b in zip("qkv", weights, biases, strict=True):
            linear = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                linear.weight.copy_(w)
                if b is not None:
                    linear.bias.copy_(b)
            container.add_module(name, linear)
        container.attention = Attention(heads, 1.0 / math.sqrt(e // heads), layer.dropout)
        container.out_proj = layer.out_proj
        target = str(node.target)
        self.module.add_submodule(target, container.train(layer.training))
        graph = self.graph
        with graph.inserting_before(node):
            inputs = [given["query"], given["key"], given["value"]]
            if not layer.batch_first:
                moved: dict[fx.Node, fx.Node] = {}
                for x in inputs:
                    if x not in moved:
                        moved[x] = graph.call_method("transpose", (x, 0, 1))
                inputs = [moved[x] for x in inputs]
            q, k, v = (graph.call_module(f"{target}.{name}", (x,)) for name, x in zip("qkv", inputs, strict=True))
            out = graph.call_module(f"{target}.out_proj", (graph.call_module(f"{target}.attention", (q, k, v)),))
            if not layer.batch_first:
                out = graph.call_method("transpose", (out, 0, 1))
        for user in users:
            if user.args[1] == 0:
                user.replace_all_uses_with(out)
            graph.erase_node(user)
        graph.erase_node(node)
        self.count += 1
