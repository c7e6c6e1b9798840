"""Attention above rank 4 written out as matmuls in the inference form (``purge/attention_rank.py``): the same
function, and a purged Swin that exports to ONNX (its rank-5 scaled_dot_product_attention did not)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from channels import randomised, set_pattern
from test_purge import max_error
from test_transformers import small_swin
from torch import fx, nn

import ctrlsparse
from ctrlsparse.purge import deploy_form, export_program, purge, save_onnx
from ctrlsparse.purge.attention_rank import written_out_attention


class Windowed(nn.Module):
    """Attention over (batch, windows, heads, tokens, channels), with a float, a boolean or no mask."""

    def __init__(self, mask: str):
        super().__init__()
        self.mask = mask
        torch.manual_seed(0)
        self.register_buffer("bias", torch.randn(1, 2, 5, 5))
        self.register_buffer("allowed", (torch.rand(3, 1, 5, 5) > 0.3) | torch.eye(5, dtype=torch.bool))

    def forward(self, x):  # x: (batch, 3 windows, 2 heads, 5 tokens, 4 channels)
        mask = {"float": self.bias, "bool": self.allowed, "none": None}[self.mask]
        return F.scaled_dot_product_attention(x, x * 0.5, x + 1.0, attn_mask=mask, scale=0.3)


@pytest.mark.parametrize("mask", ["float", "bool", "none"])
def test_rank_5_attention_written_out_is_the_same_function(mask):
    x = torch.randn(2, 3, 2, 5, 4)
    module = fx.symbolic_trace(Windowed(mask))
    with torch.no_grad():
        reference = module(x)
        assert written_out_attention(module, x) == 1
        assert max_error(module(x), reference) <= 1e-5
    assert not any(n.target is F.scaled_dot_product_attention for n in module.graph.nodes)


def test_rank_4_attention_is_left_to_scaled_dot_product_attention():
    module = fx.symbolic_trace(Windowed("none"))
    assert written_out_attention(module, torch.randn(2, 3, 5, 4)) == 0  # (batch, heads, tokens, channels)


def test_a_purged_swin_exports_to_onnx(tmp_path):
    x = torch.randn(2, 3, 32, 32)
    gated = ctrlsparse.gate(randomised(small_swin()), x).eval()
    set_pattern(gated, 1)
    form = deploy_form(purge(gated, x), x)
    assert form.written_out_attention == 4 == form.summary()["deploy_written_out_attention"]  # 2 stages x 2 blocks
    with torch.no_grad():
        assert max_error(form.model(x), gated(x)) <= 1e-5
    model = copy.deepcopy(form.model)
    assert save_onnx(model, x[:1], tmp_path / "purged.onnx", export_program(model, x[:1])) <= 1e-4
