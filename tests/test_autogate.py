"""Automatic gating (ctrlsparse.gate): which layers get gates, exactness with the gates open, and the external
archs (torchvision:<builder>, module:<pkg.mod>:<fn>) with their weights and input fitting."""

from __future__ import annotations

import pytest
import torch
import torchvision
from channels import randomised
from torch import nn

import ctrlsparse
from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import hparams_hash
from ctrlsparse.layers import gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.purge import count, purge
from ctrlsparse.registry import ARCHS
from ctrlsparse.training.setup import build_model

TORCHVISION = ("resnet18", "resnet50", "mobilenet_v2", "vgg11_bn", "efficientnet_b0")
BIG = {"resnet50", "vgg11_bn", "efficientnet_b0"}  # 10-25 s each on a shared core


def torchvision_params():
    return [pytest.param(name, marks=pytest.mark.slow) if name in BIG else name for name in TORCHVISION]


def torchvision_model(name: str, classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return randomised(torchvision.models.get_model(name, weights=None, num_classes=classes)).eval()


def open_all(model: nn.Module) -> None:
    with torch.no_grad():
        for _, layer in gated_layers(model):
            layer.log_alpha.fill_(5.0)  # eval gate min(1, 1.2 sigmoid(5) - 0.1) = 1


@pytest.mark.parametrize("name", torchvision_params())
def test_all_open_gated_torchvision_model_computes_the_original(name):
    model, x = torchvision_model(name), torch.randn(2, 3, 32, 32)
    gated = ctrlsparse.gate(model, x).eval()
    open_all(gated)
    with torch.no_grad():
        assert torch.allclose(gated(x), model(x), rtol=0, atol=1e-6)
    assert count(gated, x) == count(model, x)  # same parameters (gates aside) and MACs
    assert len(gated_layers(gated)) > 1
    names = dict(model.named_parameters())
    for key, value in gated.named_parameters():  # the original's names and weights, unscaled
        assert key.endswith("log_alpha") or torch.equal(value, names[key]), key


class Toy(nn.Module):
    """stem -> [a -> depthwise -> b] + stem (residual) -> squeeze-excitation-like gate c -> pool -> fc."""

    def __init__(self):
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.a, self.a_bn = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.dw, self.dw_bn = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.b, self.b_bn = nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.c = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        stem = self.stem_bn(self.stem(x)).relu()
        out = self.dw_bn(self.dw(self.a_bn(self.a(stem)).relu())).relu()
        out = self.b_bn(self.b(out)) + stem
        out = out * torch.sigmoid(self.c(out))
        return self.fc(nn.functional.adaptive_avg_pool2d(out, 1).flatten(1))


def test_gating_couples_the_residual_stream_the_depthwise_conv_and_the_multiply():
    """stem, b (added to the stem) and c (multiplied with the stream) share the stream's gates; a's channels go
    through the depthwise conv and its BatchNorm into b: one group of a's 8 channels."""
    model = randomised(Toy()).eval()
    x = torch.randn(2, 3, 8, 8)
    gated = ctrlsparse.gate(model, x).eval()
    assert {name: group.n_gates for name, group in gated_layers(gated)} == {"gates.stem": 8, "gates.a": 8}
    assert [type(gated.get_submodule(n)) for n in ("stem", "a", "dw", "b", "c", "fc")] == [nn.Conv2d] * 5 + [nn.Linear]
    with torch.no_grad():  # close a's channels 0 and 5 and stream channel 3
        gated.get_submodule("gates.a").log_alpha.copy_(torch.tensor([-9.0, 5, 5, 5, 5, -9, 5, 5]))
        gated.get_submodule("gates.stem").log_alpha.copy_(torch.tensor([5.0, 5, 5, -9, 5, 5, 5, 5]))
    purged = purge(gated, x)
    assert (purged.a.out_channels, purged.dw.groups, purged.b.in_channels) == (6, 6, 6)
    assert (purged.stem.out_channels, purged.b.out_channels, purged.c.out_channels, purged.fc.in_features) == (7,) * 4
    with torch.no_grad():
        assert (purged(x) - gated(x)).abs().max() <= 1e-5
    open_all(gated)
    with torch.no_grad():
        assert torch.allclose(gated(x), model(x), rtol=0, atol=1e-6)


def test_resnet18_has_one_group_per_stage_stream_and_one_per_block_inner_width():
    gated = ctrlsparse.gate(torchvision_model("resnet18"), torch.randn(1, 3, 32, 32))
    names = [name for name, _ in gated_layers(gated)]
    streams = ["gates.conv1", "gates.layer2_0_conv2", "gates.layer3_0_conv2", "gates.layer4_0_conv2"]
    inner = [f"gates.layer{s}_{b}_conv1" for s in range(1, 5) for b in range(2)]
    assert sorted(names) == sorted(streams + inner)
    widths = {name: group.n_gates for name, group in gated_layers(gated)}
    assert [widths[name] for name in streams] == [64, 128, 256, 512]


def test_gate_refuses_a_gated_model_and_keeps_the_mode():
    model = torchvision_model("resnet18").train()
    x = torch.randn(2, 3, 16, 16)
    gated = ctrlsparse.gate(model, x)
    assert gated.training and model.training and not gated_layers(model)
    with pytest.raises(ValueError, match="already has gated layers"):
        ctrlsparse.gate(gated, x)


def test_unstructured_gating_gates_every_plain_conv_and_linear_per_weight():
    model, x = Toy().eval(), torch.randn(2, 3, 8, 8)
    gated = ctrlsparse.gate(model, x, structured=False)
    sizes = {name: layer.n_gates for name, layer in gated_layers(gated)}
    assert sizes == {"stem": 3 * 8 * 9 + 8, "a": 64, "b": 64, "c": 64 + 8, "fc": 32 + 4}  # not the depthwise conv


def test_torchvision_and_module_names_pass_the_registry_without_torchvision_building():
    HParams(arch="torchvision:resnet18")
    HParams(arch="module:mynets.models:build")
    with pytest.raises(HParamError, match=r"torchvision:<builder>, module:<package.module>:<function>"):
        HParams(arch="torchvision:")
    with pytest.raises(HParamError, match="arch_weights: applies to torchvision:/module: archs only"):
        HParams(arch="mlp", arch_weights="w.pt")
    assert "torchvision:resnet18" not in list(ARCHS)  # listing stays the hand-written archs
    plain, weighted = HParams(arch="torchvision:resnet18"), HParams(arch="torchvision:resnet18", arch_weights="w.pt")
    assert hparams_hash(plain) != hparams_hash(weighted)  # the weights file is part of the run's identity


@pytest.mark.parametrize(
    ("arch", "text"),
    [
        ("torchvision:resnet9", "has no classification builder 'resnet9'; choose one of: "),
        ("module:nowhere_at_all:build", "cannot import build from nowhere_at_all"),
        ("module:build", "must read module:<package.module>:<function>"),
    ],
)
def test_bad_external_names_fail_at_build_time_with_one_line(arch, text):
    with pytest.raises(HParamError, match=text) as caught:
        build_model(HParams(arch=arch), (3, 8, 8), 10)
    assert caught.value.key == "arch" and "\n" not in str(caught.value)


def test_grayscale_digits_fit_resnet18_repeated_to_rgb_and_upsampled():
    x = torch.randn(4, 1, 8, 8)
    hparams = HParams(arch="torchvision:resnet18", arch_input_size=32)
    torch.manual_seed(0)
    model = build_model(hparams, (1, 8, 8), 10).eval()
    assert model.conv1.in_channels == 3 and model(x).shape == (4, 10)
    torch.manual_seed(0)
    dense = torchvision.models.resnet18(num_classes=10).eval()
    open_all(model)
    rgb = nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(model(x), dense(rgb), rtol=0, atol=1e-6)
    dense_run = build_model(HParams(arch="torchvision:resnet18", method="dense"), (1, 8, 8), 10)
    assert not gated_layers(dense_run) and dense_run(x).shape == (4, 10)


def test_weights_file_is_loaded_and_another_classifier_is_trained_from_scratch(tmp_path):
    source = torchvision_model("resnet18", classes=1000)
    torch.save(source.state_dict(), tmp_path / "imagenet.pt")
    hparams = HParams(arch="torchvision:resnet18", arch_weights=str(tmp_path / "imagenet.pt"))
    model = build_model(hparams, (3, 16, 16), 10)
    assert torch.equal(model.get_submodule("layer1.0.conv1").weight, source.layer1[0].conv1.weight)
    assert torch.equal(model.bn1.running_var, source.bn1.running_var)
    assert model.fc.weight.shape == (10, 512)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(HParamError, match="is missing from"):
        build_model(HParams(arch="torchvision:resnet18", arch_weights=str(tmp_path / "other.pt")), (3, 16, 16), 10)


def test_module_builder_of_your_own(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = ARCHS["module:my_nets:build"]((1, 8, 8), 10, LayerFactory())
    assert [layer.n_gates for _, layer in gated_layers(model)] == [64, 32]  # the pixels, the hidden units
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_cli_trains_torchvision_resnet18_on_digits_to_a_model_wise_target(tmp_path):
    """The real thing, through the CLI: 20 epochs of 12 steps, 4-7 min on the shared 2-core VM (0.4933 reached)."""
    import json
    import subprocess
    import sys

    # 240 steps: nuPI and these rates reach 0.4933. The default alpha_min 1e-4 and polarization (issue 14) ended
    # at 0.486 here: a 20-epoch run of an 11M-parameter model has no steps to spare for the tie-breaker.
    flags = "--dual-optimizer nupi --lr 1e-3 --gates-lr 0.03 --alpha-min 1e-3 --gates-polarization 0"
    flags += " --epochs 20 --threads 1 --device cpu --quiet"
    command = [sys.executable, "-m", "ctrlsparse", "train", "--out", str(tmp_path / "run"), "--dataset", "digits"]
    command += ["--arch", "torchvision:resnet18", "--target", "0.5", *flags.split()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["expected_density"] == pytest.approx(0.5, abs=0.01)
    assert summary["test_accuracy"] > 0.15  # above chance (0.1); 8x8 inputs and 240 steps leave it at ~0.3
