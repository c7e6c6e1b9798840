"""The purge's index ops, counted in the purged graph (what they cost is shown by ``benchmarks/latency.py``): a
residual add of a block that lost channels the stream keeps is one ``index_add``; coupled streams and
StochasticDepth need none."""

from __future__ import annotations

import pytest
import torch
from test_purge import build, gated_torchvision, max_error, set_gates
from torch import fx

from ctrlsparse.purge import purge

INDEX_OPS = (torch.index_select, torch.index_add, torch.cat)


def calls(model: fx.GraphModule, target) -> int:
    return sum(1 for n in model.graph.nodes if n.op == "call_function" and n.target is target)


def test_a_residual_add_of_a_sparser_branch_is_one_index_add():
    model, x = build("resnet18")  # the paper's layout: each block's last conv gated by itself
    set_gates(model, "random", 3)
    with torch.no_grad():
        reference = model(x)
    purged = purge(model, x)
    blocks = sum(1 for name, _ in model.named_modules() if name.count(".") == 1 and name.startswith("layer"))
    assert calls(purged, torch.index_add) == blocks == 8
    assert calls(purged, torch.cat) == 0 and calls(purged, torch.index_select) == 0
    assert max_error(purged(x), reference) <= 1e-5


@pytest.mark.slow
def test_stochastic_depth_leaves_no_index_op_in_a_purged_efficientnet():
    _, gated, x = gated_torchvision("efficientnet_b0")
    set_gates(gated, "random", 0)
    with torch.no_grad():
        reference = gated(x)
    purged = purge(gated, x)
    assert sum(calls(purged, op) for op in INDEX_OPS) == 0
    assert max_error(purged(x), reference) <= 1e-5
