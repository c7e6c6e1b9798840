"""The inference form the purge saves and times: BatchNorms folded into their convs, channels-last memory, the
same function; and what stays as it was when a rewrite would change it (no timed test: speed is shown by
``benchmarks/latency.py``; the memory format's choice is checked on modules that sleep a set time)."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from test_purge import BIG, build, gated_torchvision, set_gates
from torch import nn

from ctrlsparse.purge import deploy_form, load_purged, purge, save_purged
from ctrlsparse.purge.deploy import deployed, fastest, fold_batchnorms, redrawn_
from ctrlsparse.registry import ARCHS


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def same_function(form: nn.Module, plain: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        reference = plain(x)
        return float((form(x) - reference).abs().max() / reference.abs().max().clamp(min=1.0))


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in BIG else a for a in ARCHS])
def test_every_registered_arch_keeps_its_function_in_the_deploy_form(arch):
    model, x = build(arch, after_norm=True)
    set_gates(model, "random", 0)
    plain = purge(model, x)
    form = deploy_form(plain, x)
    assert same_function(form.model, plain, torch.randn(3, *x.shape[1:])) < 1e-5
    assert batchnorms(form.model) == batchnorms(plain) - form.folded
    has_conv = any(isinstance(m, nn.Conv2d) for m in plain.modules())
    assert form.memory_format == ("channels_last" if has_conv else "contiguous")
    if form.memory_format == "channels_last":
        weight = next(m.weight for m in form.model.modules() if isinstance(m, nn.Conv2d))
        assert weight.is_contiguous(memory_format=torch.channels_last)


def test_a_purged_resnet_loses_every_batchnorm_and_the_plain_model_is_untouched():
    _, gated, x = gated_torchvision("resnet18")
    set_gates(gated, "random", 1)
    plain = purge(gated, x)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    form = deploy_form(plain, x)
    assert form.folded == batchnorms(plain) == 20 and batchnorms(form.model) == 0
    assert same_function(form.model, plain, torch.randn(4, *x.shape[1:])) < 1e-5
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items())  # a copy was rewritten


class PreActivation(nn.Module):
    """A BatchNorm whose conv output is read twice (it cannot be folded) and a ``view`` of a conv map (channels
    last cannot run it)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.head = nn.Linear(6 * 5 * 5, 2)

    def forward(self, x):
        y = self.conv(x)
        y = self.norm(y) + y
        return self.head(y.view(y.size(0), -1))


def test_what_would_change_the_function_or_fail_is_left_as_it_was():
    model = PreActivation().eval()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 5, 5)
    form = deploy_form(model, x)
    assert form.folded == 0 and batchnorms(form.model) == 1
    assert form.memory_format == "contiguous"  # the view of a channels-last map fails
    assert same_function(form.model, model, x) < 1e-6


def test_a_batchnorm_after_a_linear_or_in_training_mode_is_not_folded():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    folded, count = fold_batchnorms(model)
    assert count == 0 and batchnorms(folded) == 1


def test_the_saved_deploy_form_reads_back_channels_last_with_the_same_output(tmp_path):
    model, x = build("resnet18")
    set_gates(model, "random", 2)
    form = deploy_form(purge(model, x), x)
    path = save_purged(form.model, x, tmp_path / "purged.pt2")
    loaded = load_purged(path)
    conv_weights = [v for k, v in loaded.state_dict().items() if v.dim() == 4]
    assert conv_weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    assert same_function(loaded, form.model, torch.randn(3, *x.shape[1:])) < 1e-6


def test_a_timed_form_keeps_the_memory_format_it_reports():
    model, x = build("cnn")
    set_gates(model, "random", 1)
    plain = purge(model, x)
    form = deploy_form(plain, x, timing=torch.randn(32, *x.shape[1:]))
    fmt = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[form.memory_format]
    weights = [m.weight for m in form.model.modules() if isinstance(m, nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=fmt) for w in weights)
    assert form.folded == 2 and same_function(form.model, plain, torch.randn(3, *x.shape[1:])) < 1e-5


class SharedConv(nn.Module):
    """One conv called twice, a BatchNorm after one of the calls: folding it would change the other."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.norm(self.conv(x)) + self.conv(x)


def test_a_conv_called_twice_keeps_its_batchnorm():
    model = SharedConv().eval()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
    folded, count = fold_batchnorms(model)
    assert count == 0 and batchnorms(folded) == 1


class Sleeper(nn.Module):
    """Takes ``seconds[batch size]`` per call: two of them tell which batch decided the memory format."""

    def __init__(self, seconds: dict[int, float]):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds[x.shape[0]])
        return x


@pytest.mark.parametrize(
    ("model", "other", "faster"),
    [
        ({4: 0.04, 1: 0.02}, {4: 0.05, 1: 0.02}, True),  # as fast at batch 1, faster at 4
        ({4: 0.05, 1: 0.02}, {4: 0.04, 1: 0.04}, True),  # 1.25x slower at 4, 2x faster at 1: never much slower
        ({4: 0.06, 1: 0.03}, {4: 0.04, 1: 0.04}, False),  # 1.5x slower at 4, 1.33x faster at 1: the other
    ],
)
def test_the_memory_format_is_the_one_never_much_slower_over_the_timing_batches(model, other, faster):
    batches = (torch.zeros(4, 1), torch.zeros(1, 1))
    chosen = fastest({"other": Sleeper(other), "model": Sleeper(model)}, batches, seconds=0.0)
    assert chosen == ("model" if faster else "other")


def test_on_one_timing_batch_the_faster_format_is_chosen():
    assert fastest({"slow": Sleeper({1: 0.02}), "fast": Sleeper({1: 0.0})}, torch.zeros(1, 1), seconds=0.0) == "fast"
    assert fastest({"fast": Sleeper({1: 0.0}), "slow": Sleeper({1: 0.02})}, torch.zeros(1, 1), seconds=0.0) == "fast"


def test_the_dense_baseline_is_timed_with_redrawn_weights_and_folds():
    """The dense baseline is its architecture, whatever the run trained: a trained run's closed channels keep
    BatchNorm variances of ~0, and opened in the dense baseline they made the fold change the output, so it was
    refused (a digits mobilenet_v2's dense model timed 3.5x slower than its architecture)."""
    model, x = build("cnn")
    trained = copy.deepcopy(model)
    norms = [m for m in trained.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.running_var[::2] = 1e-22
        for p in trained.parameters():
            p.mul_(3.0)
    before = [p.detach().clone() for p in trained.parameters()]
    form = deployed(trained, x, dense=True)
    assert form.folded == len(norms) == 2
    assert same_function(form.model, deployed(model, x, dense=True).model, torch.randn(3, *x.shape[1:])) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, trained.parameters(), strict=True))  # the model untouched
    purged = purge(trained, x)
    state = torch.get_rng_state()
    redrawn_(purged)
    assert torch.equal(torch.get_rng_state(), state)  # re-drawing leaves the run's random stream as it was
