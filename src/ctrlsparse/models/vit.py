"""A small Vision Transformer for the offline data sets (mnist5k's 28x28, digits' 8x8), gated by
:func:`ctrlsparse.gate` like the torchvision archs: every attention head, every MLP neuron and every channel of
the residual stream (the embedding width) is a gate.

    patches side/4 x side/4 (a conv, stride = kernel) -> + class token, + position embedding
    -> 3 x [x + proj(attention(LN(x))), x + fc2(GELU(fc1(LN(x))))] -> LN -> head on the class token

Width 48, 3 heads of 16, MLP 96: on mnist5k (16 patches of 7x7 + the class token) 60,730 parameters and 1.06 M
MACs an image, so 2,000 steps of 100 images train in minutes on one CPU core. The attention is written the
way timm writes it (one qkv Linear, reshape / permute / unbind into heads, ``scaled_dot_product_attention``), which
the channel analysis rewrites into its one attention op (:mod:`ctrlsparse.channels.attention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlsparse.models.autogate import gate
from ctrlsparse.models.factory import LayerFactory

WIDTH, HEADS, MLP, DEPTH = 48, 3, 96, 3
PATCHES_PER_SIDE = 4


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, mlp), nn.Linear(mlp, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, height, width = input_shape
        if height != width or height % PATCHES_PER_SIDE:
            raise ValueError(
                f"arch 'vit' needs square images whose side is a multiple of {PATCHES_PER_SIDE}, got {input_shape}"
            )
        patch = height // PATCHES_PER_SIDE
        self.embed = nn.Conv2d(channels, WIDTH, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.position = nn.Parameter(torch.randn(1, PATCHES_PER_SIDE**2 + 1, WIDTH) * 0.02)
        self.blocks = nn.Sequential(*(Block(WIDTH, HEADS, MLP) for _ in range(DEPTH)))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        return self.head(self.norm(self.blocks(x))[:, 0])


def build_vit(input_shape: tuple[int, ...], num_classes: int, layers: LayerFactory) -> nn.Module:
    """The dense ViT, or its gated copy (:func:`ctrlsparse.gate`) when ``layers.gated``."""
    model = ViT(input_shape, num_classes)
    if not layers.gated:
        return model
    return gate(model, torch.zeros(2, *input_shape), layers.droprate_init, layers.structured)
