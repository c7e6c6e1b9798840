"""Purging: for every architecture and several gate patterns the purged model computes the gated model's eval
function (max abs diff <= 1e-5, relative where outputs exceed 1), has exactly the parameters the open gates leave, loads without ctrlsparse, and
``ctrlsparse purge RUN_DIR`` adds the sizes to a finished run's summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from channels import randomised
from torch import nn

from ctrlsparse import gates as hc
from ctrlsparse.hparams.defaults import GATE_GROUP_ARCHS
from ctrlsparse.layers import GatedLayer, L0Conv2d, L0Linear, gated_layers
from ctrlsparse.models.factory import LayerFactory
from ctrlsparse.plumbing import paths
from ctrlsparse.purge import count, load_purged, purge, save_purged
from ctrlsparse.registry import ARCHS

# Input shape and classes per architecture: small inputs keep the big nets fast (they end in adaptive pooling).
SHAPES = {
    "mlp": ((1, 8, 8), 10),
    "cnn": ((1, 8, 8), 10),
    "lenet5": ((1, 28, 28), 10),
    "wrn16_4": ((3, 32, 32), 10),
    "wrn28_10": ((3, 16, 16), 100),
    "resnet18": ((3, 32, 32), 200),
    "resnet50": ((3, 64, 64), 1000),
    "vit": ((1, 8, 8), 10),
}
BIG = {"wrn28_10", "resnet50"}
PATTERNS = ("random", "nearly_closed", "mixed")


def arch_params(gate_groups: bool = True):
    """Every registered arch (``gate_groups`` False: those with their own gated layers, whose open parameters the
    formulas below count; the ViT's gate groups are checked in test_transformers.py)."""
    archs = [a for a in ARCHS if gate_groups or a not in GATE_GROUP_ARCHS]
    return [pytest.param(a, marks=pytest.mark.slow) if a in BIG else a for a in archs]


def build(arch: str, gated: bool = True, seed: int = 0, after_norm: bool = False) -> tuple[nn.Module, torch.Tensor]:
    shape, classes = SHAPES.get(arch, ((3, 32, 32), 10))
    torch.manual_seed(seed)
    model = ARCHS[arch](shape, classes, LayerFactory(gated=gated, gate_after_norm=after_norm))
    with torch.no_grad():  # BatchNorm statistics and affine parameters away from the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval(), torch.randn(3, *shape)


def set_gates(model: nn.Module, pattern: str, seed: int) -> None:
    """random: closed, fractional and open gates; nearly_closed: one (fractional) gate open per layer; mixed:
    alternate layers all open / nearly closed. Every layer keeps at least one group."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for index, (_, layer) in enumerate(gated_layers(model)):
            n = layer.n_gates
            if pattern == "random":
                values = 3 * torch.randn(n, generator=generator)
            elif pattern == "nearly_closed" or index % 2:
                values = torch.full((n,), -5.0)
                values[torch.randint(n, (1,), generator=generator)] = 0.5  # a fractional gate
            else:
                values = torch.full((n,), 5.0)
            values[torch.randint(n, (1,), generator=generator)] = 0.5
            layer.log_alpha.copy_(values)


def open_count(layer: GatedLayer) -> torch.Tensor:
    return hc.median_gates(layer.log_alpha) > 0


def max_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Max abs difference, relative to the output's scale where that exceeds 1 (WRN-28-10 with random BatchNorm
    statistics reaches logits of ~85, where float32 rounding alone is ~1e-5 absolute)."""
    return (output - reference).abs().max().item() / max(1.0, reference.abs().max().item())


def at_least_one(keep: torch.Tensor) -> torch.Tensor:
    """The purge keeps one (all-zero) channel of a tensor whose channels are all closed or unread."""
    if not keep.any():
        keep = keep.clone()
        keep[0] = True
    return keep


def expected_params(model: nn.Module) -> int:
    """The parameters the open gates leave, written out per architecture family (independent of the purge)."""
    name = type(model).__name__
    if isinstance(model, nn.Sequential):  # MLP: Linear layers gated by input neuron
        linears = [m for m in model if isinstance(m, nn.Linear)]
        ins = [int(open_count(m).sum()) for m in linears]
        outs = ins[1:] + [linears[-1].out_features]
        return sum(i * o + o for i, o in zip(ins, outs, strict=True))
    if name in ("SmallCNN", "LeNet5"):
        return _conv_then_linear_params(model)
    total = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("log_alpha"))
    for block in model.modules():
        chain = _block_chain(block)
        if chain:
            total -= _chain_params(chain, gated=False) - _chain_params(chain, gated=True)
    return total


def _conv_then_linear_params(model: nn.Module) -> int:
    convs, fc1, fc2 = [model.conv1, model.conv2], model.fc1, model.fc2
    bns = [getattr(model, "bn1", None), getattr(model, "bn2", None)]
    area = fc1.in_features // convs[1].out_channels
    fc1_open = open_count(fc1)
    needed = fc1_open.view(convs[1].out_channels, area).any(1)
    kept = [at_least_one(open_count(convs[0])), at_least_one(open_count(convs[1]) & needed)]
    columns = max(1, int((fc1_open & kept[1].repeat_interleave(area)).sum()))  # a dead path keeps one zero column
    hidden = int(open_count(fc2).sum())
    total, previous = 0, convs[0].in_channels
    for conv, bn, keep in zip(convs, bns, kept, strict=True):
        k = int(keep.sum())
        total += k * previous * conv.kernel_size[0] * conv.kernel_size[1] + (k if conv.bias is not None else 0)
        total += 2 * k if bn is not None else 0
        previous = k
    return total + columns * hidden + hidden + hidden * fc2.out_features + fc2.out_features


def _block_chain(block: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """A residual block's conv chain with the BatchNorm after each conv (inside the block)."""
    name = type(block).__name__
    if name == "PreActBlock":
        return [(block.conv1, block.bn2), (block.conv2, None)]
    if name in ("BasicBlock", "Bottleneck"):
        return [(getattr(block, f"conv{i}"), getattr(block, f"bn{i}")) for i in (1, 2, 3) if hasattr(block, f"conv{i}")]
    return []


def _chain_params(chain: list, gated: bool) -> int:
    total, previous = 0, chain[0][0].in_channels
    for conv, bn in chain:
        k = int(open_count(conv).sum()) if gated and isinstance(conv, L0Conv2d) else conv.out_channels
        total += k * previous * conv.kernel_size[0] * conv.kernel_size[1] + 2 * k * (bn is not None)
        previous = k
    return total


@pytest.mark.parametrize("after_norm", [False, True], ids=["gated_filters", "gate_after_norm"])
@pytest.mark.parametrize("arch", arch_params(gate_groups=False))
def test_purged_model_computes_the_gated_eval_function_with_the_open_parameters(arch, after_norm):
    """Fractional eval gates folded into the filters, or (gate_after_norm) into the BatchNorm after them."""
    for seed, pattern in enumerate(PATTERNS):
        model, x = build(arch, seed=seed, after_norm=after_norm)
        set_gates(model, pattern, seed)
        reference = model(x)
        purged = purge(model, x)
        assert max_error(purged(x), reference) <= 1e-5, pattern
        plain = {type(m) for m in purged.modules()} - {type(purged)}
        assert plain <= {
            nn.Module,
            nn.Conv2d,
            nn.Linear,
            nn.BatchNorm2d,
            nn.ReLU,
            nn.MaxPool2d,
            nn.AdaptiveAvgPool2d,
            nn.Identity,
        }
        assert count(purged, x).params == expected_params(model), pattern
        assert count(purged, x).macs < count(model, x).macs


@pytest.mark.parametrize("arch", arch_params())
def test_all_gates_open_purges_to_the_dense_size(arch):
    model, x = build(arch)
    with torch.no_grad():
        for _, layer in gated_layers(model):
            layer.log_alpha.fill_(5.0)
    dense, _ = build(arch, gated=False)
    purged = purge(model, x)
    assert count(purged, x) == count(dense, x)
    assert max_error(purged(x), model(x)) <= 1e-5


def test_a_dense_model_purges_to_itself():
    model, x = build("cnn", gated=False)
    purged = purge(model, x)
    assert count(purged, x) == count(model, x)
    assert torch.equal(purged(x), model(x))


def test_unstructured_models_are_refused():
    model = ARCHS["mlp"]((1, 8, 8), 10, LayerFactory(structured=False))
    with pytest.raises(ValueError, match="unstructured"):
        purge(model, torch.randn(1, 1, 8, 8))


def test_saved_purged_model_loads_and_runs_without_ctrlsparse(tmp_path):
    model, x = build("cnn")
    set_gates(model, "random", 0)
    path = save_purged(purge(model, x), x, tmp_path / "purged.pt2")
    torch.save({"x": torch.randn(5, 1, 8, 8)}, tmp_path / "x.pt")
    expected = model(torch.load(tmp_path / "x.pt")["x"])
    code = (
        "import sys, torch\n"
        f"m = torch.export.load({str(path)!r}).module()\n"
        f"y = m(torch.load({str(tmp_path / 'x.pt')!r})['x'])\n"
        "assert not [n for n in sys.modules if n.startswith('ctrlsparse')], 'ctrlsparse was imported'\n"
        f"torch.save(y, {str(tmp_path / 'y.pt')!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (torch.load(tmp_path / "y.pt") - expected).abs().max().item() <= 1e-5
    assert (load_purged(path)(x) - model(x)).abs().max().item() <= 1e-5


def test_cli_purge_writes_the_model_and_the_summary_keys(tmp_path):
    from ctrlsparse.hparams import HParams
    from ctrlsparse.training.loop import train

    run = tmp_path / "run"
    train(HParams.resolve(arch="cnn", target=(0.5,), target_scope="layer", epochs=2, device="cpu"), run, None)
    result = subprocess.run(
        [sys.executable, "-m", "ctrlsparse", "purge", str(run)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(paths.summary_path(run).read_text())
    assert {"params", "macs", "params_pct", "macs_pct"} <= set(summary)
    assert 0 < summary["params_pct"] <= 100 and 0 < summary["macs_pct"] <= 100
    assert summary["purged_test_accuracy"] == summary["test_accuracy"]
    assert paths.purged_model_path(run).stat().st_size > 0
    assert json.loads(paths.purge_sizes_path(run).read_text())["params"] == summary["params"]


def test_cli_purge_names_a_missing_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ctrlsparse", "purge", str(tmp_path / "nothing")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "summary.json is missing" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_layers_the_purge_cannot_slice_stay_whole_but_plain():
    """A Linear on (N, T, F) acts on the last dim, not the channel dim: it is kept whole, gates folded in."""

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = L0Linear(8, 6), L0Linear(6, 4)

        def forward(self, x):
            return self.b(self.a(x).relu())

    model = Tokens().eval()
    with torch.no_grad():
        model.a.log_alpha.copy_(3 * torch.randn(8))
        model.b.log_alpha.copy_(3 * torch.randn(6))
    x = torch.randn(2, 5, 8)
    purged = purge(model, x)
    assert max_error(purged(x), model(x)) <= 1e-5
    assert {type(m) for m in purged.modules()} == {type(purged), nn.Linear}


# --- models gated by ctrlsparse.gate (torchvision's, random weights, 32x32 inputs) ---
TORCHVISION = ("resnet18", "resnet50", "mobilenet_v2", "vgg11_bn", "efficientnet_b0")
TORCHVISION_BIG = {"resnet50", "mobilenet_v2", "vgg11_bn", "efficientnet_b0"}  # 20-70 s each on a shared core


def gated_torchvision(name: str) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(dense original, gated copy, input) with BatchNorms away from the identity."""
    import torchvision

    from ctrlsparse.models.autogate import gate

    torch.manual_seed(0)
    dense = randomised(torchvision.models.get_model(name, weights=None, num_classes=10))
    x = torch.randn(2, 3, 32, 32)
    return dense, gate(dense, x).eval(), x


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in TORCHVISION_BIG else n for n in TORCHVISION]
)
def test_purged_torchvision_model_computes_the_gated_eval_function(name):
    dense, model, x = gated_torchvision(name)
    with torch.no_grad():
        for _, layer in gated_layers(model):
            layer.log_alpha.fill_(5.0)
    assert count(purge(model, x), x) == count(dense, x)  # all open: exactly the original's size
    set_gates(model, "random", 0)
    reference = model(x)
    purged = purge(model, x)
    assert max_error(purged(x), reference) <= 1e-5
    assert not [m for m in purged.modules() if isinstance(m, GatedLayer)]
    assert count(purged, x).params < count(dense, x).params
    if name == "mobilenet_v2":  # the depthwise convs lose the channels their expansion conv closed
        assert depthwise_channels(purged) < depthwise_channels(dense)


def depthwise_channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)
