"""Parameters and multiply-accumulates of a model, counted by torch's own FLOP counter.

MACs = FLOPs / 2 of ``torch.utils.flop_counter.FlopCounterMode`` on a batch of one: convolutions and matrix
products (the layers that carry the weights); BatchNorm, activations, pooling and the purge's index ops are not
counted, as in ptflops' convention for the paper's tables up to those small terms. Two attention kernels torch's
counter leaves out on the CPU are counted here as their matrix products: ``scaled_dot_product_attention``'s CPU
kernel (QKᵀ and AV) and ``nn.MultiheadAttention``'s inference fast path (its projections too). Parameters are every
parameter but the gates' ``log_alpha`` (BatchNorm running statistics are buffers, not parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.endswith("log_alpha"))


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _fast_multihead_flops(query, key, value, embed_dim, num_heads, *args, out_shape=None, **kwargs) -> int:
    """``torch._native_multi_head_attention`` on (B, T, E): the q, k, v and output projections, QKᵀ and AV."""
    batch, tq, tk = query[0], query[-2], key[-2]
    projections = batch * (tq * query[-1] + tk * key[-1] + tk * value[-1] + tq * embed_dim) * embed_dim
    return 2 * projections + 2 * 2 * batch * tq * tk * embed_dim


UNCOUNTED = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._native_multi_head_attention: _fast_multihead_flops,
}


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of one example (the first of the batch), in eval mode."""
    training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=UNCOUNTED) as counter:
            model(example[:1])
    finally:
        model.train(training)
    return counter.get_total_flops() // 2


def count(model: nn.Module, example: torch.Tensor) -> Counts:
    return Counts(count_params(model), count_macs(model, example))


def size_report(dense: Counts, purged: Counts) -> dict[str, float | int]:
    """The summary's size keys: the purged model's params and MACs, and both as % of the dense model."""
    return {
        "params": purged.params,
        "macs": purged.macs,
        "params_pct": 100.0 * purged.params / dense.params,
        "macs_pct": 100.0 * purged.macs / dense.macs,
        "dense_params": dense.params,
        "dense_macs": dense.macs,
    }
