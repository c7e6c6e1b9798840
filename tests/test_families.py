"""Every torchvision CNN classification family through ctrlsparse.gate: exact with every gate open, purged =
gated eval, expected cost at 0/1 gates = purged size, and every channel that can go can go: with one gate open
per group the purged model keeps at most 5% of the dense MACs (benchmarks/reach.py prints the table beside
Torch-Pruning's)."""

from __future__ import annotations

import pytest
import torch
from channels import check_exact, reach_macs

from ctrlsparse.layers import gated_layers
from ctrlsparse.purge import count

FAST = ("mobilenet_v3_small", "shufflenet_v2_x0_5", "mnasnet0_5", "squeezenet1_0")
SLOW = (  # 10-60 s each on a shared core
    "resnet18",
    "regnet_x_400mf",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "mobilenet_v2",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "regnet_y_400mf",
    "densenet121",
    "googlenet",
    "convnext_tiny",
    "vgg11_bn",
)


@pytest.mark.parametrize("name", [*FAST, *(pytest.param(n, marks=pytest.mark.slow) for n in SLOW)])
def test_family_is_exact_and_reaches_below_five_percent_of_its_macs(name):
    import torchvision

    torch.manual_seed(0)
    # GoogLeNet's auxiliary classifiers run in training mode only: the gated model (traced in eval) has none
    extra = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=10, **extra)
    x = torch.randn(2, 3, 32, 32)
    gated = check_exact(model, x, seeds=(1,))
    assert reach_macs(gated, x) <= 0.05 * count(model, x).macs


@pytest.mark.slow
def test_gate_points_the_analysis_cannot_place_are_left_out_and_the_model_stays_exact():
    """MaxViT's window partitions: the analysis of the gated model cannot follow some gate points (before, the
    purge failed on them); gate() leaves their groups out, so those channels stay dense and all is exact."""
    import torchvision

    from ctrlsparse.cost import ExpectedCost
    from ctrlsparse.models.autogate import unplaced_groups

    torch.manual_seed(0)
    model = torchvision.models.get_model("maxvit_t", weights=None, num_classes=10)
    x = torch.randn(2, 3, 224, 224)
    gated = check_exact(model, x, seeds=(1,))
    assert len(gated_layers(gated)) > 100  # the rest is still gated
    assert unplaced_groups(ExpectedCost(gated, x).graph, gated) == set()
