"""Swin's shifted-window attention and patch merging rewritten into ops the channel analysis knows.

torchvision's Swin calls two functions that torch.fx keeps whole (``torch.fx.wrap``): ``shifted_window_attention``
(pad, cyclic shift, window partition, qkv Linear, attention with the relative position bias and the shift mask,
proj Linear, window reverse, shift back, unpad) and ``_patch_merging_pad`` (pad, four strided slices,
concatenation). Whole, each reads its input whole and writes a fresh tensor, so neither heads nor the stream
could be gated. Written out here with the same numbers, they are maps (``F.pad`` on other dims than the
channels), moves (``torch.roll``, views, permutes, slices, the concatenation) and one
:class:`~ctrlsparse.channels.heads.Attention` whose additive bias (relative position bias + shift mask, per head,
the mask precomputed for the traced input size, a buffer left out of the state dict) the purge slices with the
kept heads. The qkv and proj Linear layers are called as modules under their own names.

Supported: Swin V1 (``logit_scale`` None) with the attention's dropout off in the traced graph (torchvision passes
``training`` as a constant, False in the eval-mode trace). Swin V2's cosine attention (``logit_scale``, the
continuous position bias MLP) is left whole: it reads its input whole, exactly, without gating its heads.
"""

from __future__ import annotations

import inspect
import operator

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ctrlsparse.channels.heads import Attention

SWIN = "torchvision.models.swin_transformer"


def is_function(node: fx.Node, name: str) -> bool:
    target = node.target
    return (
        node.op == "call_function"
        and getattr(target, "__module__", "") == SWIN
        and getattr(target, "__name__", "") == name
    )


def shift_mask(pad: tuple[int, int], window: list[int], shift: list[int]) -> Tensor:
    """torchvision's attention mask of the shifted windows: (windows, 1, T, T), 0 within a region, -100 across."""
    mask = torch.zeros(pad)
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    for count, (h, w) in enumerate((h, w) for h in h_slices for w in w_slices):
        mask[h[0] : h[1], w[0] : w[1]] = count
    mask = mask.view(pad[0] // window[0], window[0], pad[1] // window[1], window[1]).permute(0, 2, 1, 3)
    mask = mask.reshape(-1, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return torch.where(mask != 0, -100.0, 0.0).unsqueeze(1)


class Windows:
    """Rewrites the two Swin functions in ``module`` (``values``: each node's value on the example)."""

    def __init__(self, module: fx.GraphModule, values: dict[fx.Node, object]):
        self.module, self.graph, self.values = module, module.graph, values
        self.count = 0

    def linear(self, weight: fx.Node, bias: fx.Node | None) -> str | None:
        """The path of an nn.Linear holding ``weight`` (get_attr ``<path>.weight``) and ``bias``, made a module of
        those very parameters (the trace kept only the attributes)."""
        if weight.op != "get_attr" or (bias is not None and bias.op != "get_attr"):
            return None
        path, _, name = str(weight.target).rpartition(".")
        if name != "weight" or (bias is not None and str(bias.target) != f"{path}.bias"):
            return None
        w = self.module.get_parameter(str(weight.target))
        layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta")
        layer.weight = w
        if bias is not None:
            layer.bias = self.module.get_parameter(str(bias.target))
        self.module.add_submodule(path, layer)
        return path

    def attention(self, node: fx.Node) -> None:
        from torchvision.models.swin_transformer import shifted_window_attention

        given = inspect.signature(shifted_window_attention).bind(*node.args, **node.kwargs).arguments
        if given.get("logit_scale") is not None:
            return  # Swin V2's cosine attention
        if given.get("training", True) and (given.get("attention_dropout") or given.get("dropout")):
            return
        x, window, heads = given["input"], list(given["window_size"]), int(given["num_heads"])
        _, height, width, channels = self.values[x].shape
        qkv = self.linear(given["qkv_weight"], given.get("qkv_bias"))
        proj = self.linear(given["proj_weight"], given.get("proj_bias"))
        if qkv is None or proj is None:
            return
        pad = (-height % window[0], -width % window[1])
        padded = (height + pad[0], width + pad[1])
        shift = [0 if window[i] >= padded[i] else s for i, s in enumerate(given.get("shift_size", [0, 0]))]
        rows, columns = padded[0] // window[0], padded[1] // window[1]
        g = self.graph
        with g.inserting_before(node):
            if any(pad):
                x = g.call_function(F.pad, (x, (0, 0, 0, pad[1], 0, pad[0])))
            if any(shift):
                x = g.call_function(torch.roll, (x,), {"shifts": (-shift[0], -shift[1]), "dims": (1, 2)})
            x = g.call_method("view", (x, -1, rows, window[0], columns, window[1], channels))
            x = g.call_method("permute", (x, 0, 1, 3, 2, 4, 5))
            x = g.call_method("reshape", (x, -1, rows * columns, window[0] * window[1], channels))
            qkv_out = g.call_module(qkv, (x,))
            q, k, v = (g.call_function(torch.narrow, (qkv_out, -1, i * channels, channels)) for i in range(3))
            bias = given["relative_position_bias"]
            if any(shift):
                owner = proj.rpartition(".")[0]
                mask = shift_mask(padded, window, shift).to(self.values[node].device, self.values[node].dtype)
                self.module.get_submodule(owner).register_buffer("shift_mask", mask, persistent=False)
                bias = g.call_function(torch.add, (bias, g.get_attr(f"{owner}.shift_mask")))
            name = f"{proj.rpartition('.')[0]}.attention"
            self.module.add_submodule(name, Attention(heads, (channels // heads) ** -0.5).eval())
            out = g.call_module(proj, (g.call_module(name, (q, k, v, bias)),))
            out = g.call_method("view", (out, -1, rows, columns, window[0], window[1], channels))
            out = g.call_method("permute", (out, 0, 1, 3, 2, 4, 5))
            out = g.call_method("reshape", (out, -1, padded[0], padded[1], channels))
            if any(shift):
                out = g.call_function(torch.roll, (out,), {"shifts": (shift[0], shift[1]), "dims": (1, 2)})
            if any(pad):
                whole = slice(None)
                out = g.call_function(operator.getitem, (out, (whole, slice(None, height), slice(None, width), whole)))
        node.replace_all_uses_with(out)
        self.count += 1

    def patch_merging(self, node: fx.Node) -> None:
        (x,) = node.args
        height, width = self.values[x].shape[-3:-1]
        g, every = self.graph, slice(None)
        with g.inserting_before(node):
            if height % 2 or width % 2:
                x = g.call_function(F.pad, (x, (0, 0, 0, width % 2, 0, height % 2)))
            parts = [
                g.call_function(operator.getitem, (x, (Ellipsis, slice(i, None, 2), slice(j, None, 2), every)))
                for j, i in ((0, 0), (0, 1), (1, 0), (1, 1))
            ]
            out = g.call_function(torch.cat, (parts, -1))
        node.replace_all_uses_with(out)
        self.count += 1
