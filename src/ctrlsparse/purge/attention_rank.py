"""Attention over more than one leading dim, written out as the matmuls every exporter takes.

The purge emits attention as ``scaled_dot_product_attention`` on the shapes the model computed it on
(:mod:`~ctrlsparse.purge.build`); a Swin's windowed attention comes out at rank 5 (batch, windows, heads,
tokens, channels), which PyTorch runs and torch's ONNX exporter refuses ("only 4D query, key, and value are
supported"; flattened to rank 4 over a dynamic batch, its decomposition fails instead), so every purged Swin
failed its purge job's ONNX check. :func:`written_out_attention` rewrites such a call as torchvision's Swin
computes it: ``softmax(q @ kᵀ · scale + mask) @ v`` (the same function; a boolean mask fills the scores it
leaves out with -inf; not causal, no dropout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, fx
from torch.fx.passes.shape_prop import ShapeProp

from ctrlsparse.purge.index_nodes import rank_of


def written_out_attention(module: fx.GraphModule, example: Tensor) -> int:
    """Rewrite every attention call of rank above 4 in ``module`` in place (shapes from running ``example``);
    returns how many."""
    ShapeProp(module).propagate(example)
    graph, done = module.graph, 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not F.scaled_dot_product_attention or len(node.args) < 3:
            continue
        q, k, v = node.args[:3]
        kwargs = dict(node.kwargs)
        if len(node.args) > 3:
            kwargs["attn_mask"] = node.args[3]
        rank = rank_of(q) if isinstance(q, fx.Node) else None
        if rank is None or rank <= 4 or kwargs.get("is_causal") or kwargs.get("dropout_p") or kwargs.get("enable_gqa"):
            continue
        scale = kwargs.get("scale") or 1 / math.sqrt(q.meta["tensor_meta"].shape[-1])
        with graph.inserting_before(node):
            scores = graph.call_function(torch.matmul, (q, graph.call_method("transpose", (k, -2, -1))))
            scores = graph.call_function(torch.mul, (scores, scale))
            mask = kwargs.get("attn_mask")
            if isinstance(mask, fx.Node) and mask.meta["tensor_meta"].dtype == torch.bool:  # True: attend
                scores = graph.call_method(
                    "masked_fill", (scores, graph.call_method("logical_not", (mask,)), -math.inf)
                )
            elif mask is not None:  # added to the scores
                scores = graph.call_function(torch.add, (scores, mask))
            weights = graph.call_function(torch.softmax, (scores, -1))
            value = graph.call_function(torch.matmul, (weights, v))
        node.replace_all_uses_with(value)
        graph.erase_node(node)
        done += 1
    if done:
        module.recompile()
    return done
