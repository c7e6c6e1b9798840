"""The paper's architectures: dense parameter counts, gated layers per arch, a gated forward+backward."""

import pytest
import torch

from ctrlsparse.layers import L0BatchNorm2d, L0Conv2d, gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.models.resnet import ChannelPad
from ctrlsparse.registry import ARCHS

# arch: (input shape of its data set, classes, dense parameters (paper.md §6), gated layers (paper.md §1))
PAPER = {
    "mlp": ((1, 28, 28), 10, 266_610, 3),
    "lenet5": ((1, 28, 28), 10, 431_080, 4),
    "wrn28_10": ((3, 32, 32), 100, 36_536_884, 12),
    "resnet18": ((3, 64, 64), 200, 11_271_432, 16),
    "resnet50": ((3, 224, 224), 1000, 25_557_032, 48),
}
# a tiny input each arch accepts (the residual nets pool adaptively)
TINY = {
    "mlp": (1, 28, 28),
    "lenet5": (1, 28, 28),
    "wrn28_10": (3, 8, 8),
    "wrn16_4": (3, 8, 8),
    "resnet18": (3, 16, 16),
    "resnet50": (3, 32, 32),
}


def build(arch, shape, classes, **factory):
    torch.manual_seed(0)
    return ARCHS[arch](shape, classes, LayerFactory(**factory))


@pytest.mark.parametrize("arch", PAPER)
def test_dense_parameter_count_is_the_papers(arch):
    shape, classes, params, _ = PAPER[arch]
    model = build(arch, shape, classes, gated=False)
    assert sum(p.numel() for p in model.parameters()) == params
    assert not gated_layers(model)


@pytest.mark.parametrize("arch", PAPER)
def test_gated_layers_are_the_papers_and_add_only_gates(arch):
    shape, classes, params, n_gated = PAPER[arch]
    model = build(arch, shape, classes)
    layers = gated_layers(model)
    assert len(layers) == n_gated
    weights = sum(p.numel() for name, p in model.named_parameters() if not name.endswith("log_alpha"))
    assert weights == params  # gating adds log alpha only


def test_which_convs_are_gated():
    wrn = {name for name, _ in gated_layers(build("wrn28_10", (3, 32, 32), 100))}
    assert wrn == {f"stage{s}.{b}.conv1" for s in (1, 2, 3) for b in range(4)}  # only conv1 of each block
    r50 = {name for name, _ in gated_layers(build("resnet50", (3, 224, 224), 1000))}
    assert "layer1.0.conv3" in r50 and not any("downsample" in name or name == "conv1" for name in r50)
    r18 = build("resnet18", (3, 64, 64), 200)
    assert r18.conv1.kernel_size == (3, 3) and r18.conv1.stride == (2, 2) and isinstance(r18.maxpool, torch.nn.Identity)
    assert r18.layer1[0].conv1.stride == (1, 1) and r18.layer2[0].conv1.stride == (2, 2)
    assert build("resnet50", (3, 224, 224), 1000).layer2[0].conv2.stride == (2, 2)  # v1.5: stride on the 3x3
    wrn_block = build("wrn28_10", (3, 32, 32), 100).stage2[0]
    assert wrn_block.conv1.stride == (1, 1) and wrn_block.conv2.stride == (2, 2)
    assert isinstance(wrn_block.bn2, L0BatchNorm2d) and not isinstance(wrn_block.bn1, L0BatchNorm2d)


def test_parameter_names_follow_torchvision():
    import torchvision

    ours = build("resnet50", (3, 224, 224), 1000, gated=False).state_dict()
    theirs = torchvision.models.resnet50().state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("arch", TINY)
def test_gated_forward_and_backward_on_a_tiny_batch(arch):
    model = build(arch, TINY[arch], 7)
    x = torch.randn(2, *TINY[arch])
    logits = model(x)
    assert logits.shape == (2, 7)
    logits.logsumexp(1).sum().backward()
    for name, layer in gated_layers(model):
        assert layer.log_alpha.grad is not None and layer.log_alpha.grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval gates are deterministic


def test_closed_channels_of_a_blocks_last_conv_stay_zero_and_pad_restores_the_width():
    block = build("resnet18", (3, 16, 16), 10).layer1[0].eval()
    with torch.no_grad():
        block.conv2.log_alpha[:32] = -5.0  # closed: median gate 0
    x = torch.randn(2, 64, 4, 4)
    from ctrlsparse.models.norm import conv_bn, conv_bn_relu

    out = conv_bn(block.conv2, block.bn2, conv_bn_relu(block.conv1, block.bn1, x))
    assert torch.equal(out[:, :32], torch.zeros_like(out[:, :32]))  # L0BatchNorm leaves closed channels at 0
    kept = torch.arange(32, 64)
    pad = ChannelPad(64, kept)
    assert torch.equal(pad(out[:, 32:]), out)  # a purged block's output, padded back before the add
    assert isinstance(block.conv2, L0Conv2d)


def test_wrn16_4_is_the_same_builder_smaller():
    model = build("wrn16_4", (3, 32, 32), 10)
    assert len(gated_layers(model)) == 6 and model.fc.in_features == 256
