"""The one attention op the channel analysis knows: :class:`Attention`, multi-head attention on ``(..., T, E)``.

``Attention(heads, scale)(q, k, v)`` splits each of q, k, v (channels last) into ``heads`` heads (channel
``h * d + j`` is dim ``j`` of head ``h``, torch's and timm's layout), runs ``F.scaled_dot_product_attention`` and
merges the heads back (N, ..., T, heads * d_v). ``nn.MultiheadAttention`` and attention written out of Linear
layers are rewritten into it before the analysis (:mod:`~ctrlsparse.channels.attention`), so the op table has one
rule for attention: a head's query / key / value channels and its output channels go together, and removing a
head removes its slice of q, k, v and the output (QKᵀ and AV then cost ``kept heads x d x Tq x Tk`` each).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(..., T, heads * d) -> (..., heads, T, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(-3, -2)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    heads: int,
    scale: float,
    dropout: float = 0.0,
    causal: bool = False,
    bias: Tensor | None = None,
) -> Tensor:
    """Multi-head attention of channels-last q, k, v (``bias``: added to the scores, (..., heads, Tq, Tk));
    returns (..., Tq, heads * d_v)."""
    out = F.scaled_dot_product_attention(
        split_heads(q, heads),
        split_heads(k, heads),
        split_heads(v, heads),
        attn_mask=bias,
        dropout_p=dropout,
        is_causal=causal,
        scale=scale,
    )
    return out.transpose(-3, -2).flatten(-2)


class Attention(nn.Module):
    """Parameter-free multi-head attention (see the module docstring); ``dropout`` on the attention weights in
    training mode, ``scale`` the factor of QKᵀ (1 / sqrt(d) as a rule), ``causal`` a causal mask; ``forward``'s
    ``bias``, added to the scores, holds a slice per head (dim -3: Swin's relative position bias and shift mask)."""

    def __init__(self, heads: int, scale: float, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        self.heads, self.scale, self.dropout, self.causal = heads, float(scale), float(dropout), causal

    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
        dropout = self.dropout if self.training else 0.0
        return attend(q, k, v, self.heads, self.scale, dropout, self.causal, bias)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale:.4g}, dropout={self.dropout}, causal={self.causal}"
