"""Checks shared by the coupled-channel tests: a model's gated copy computes the original with every gate open,
its purge computes the gated eval function, and the expected cost at 0/1 gates is the purged model's size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

import ctrlsparse
from ctrlsparse.cost import ExpectedCost
from ctrlsparse.layers import gated_layers
from ctrlsparse.purge import count, purge, save_purged


def randomised(model: nn.Module) -> nn.Module:
    """BatchNorm statistics and affine parameters away from the identity (a wrong slice would show); a zero weight
    (a classifier or class token initialised at zero) random, else a wrong slice of it would not show."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        for parameter in model.parameters():  # torchvision's ViT zeroes its head and class token
            if parameter.dim() >= 2 and not parameter.any():
                parameter.normal_(0.0, parameter.shape[-1] ** -0.5)
    return model.eval()


def set_pattern(model: nn.Module, seed: int, fractional: bool = False) -> torch.Tensor:
    """Each gate open with probability 1/2 (at least one per group); log alpha +-10 (0/1 eval gates), or
    random values with fractional eval gates. Returns the 0/1 vector of open gates (float64)."""
    generator = torch.Generator().manual_seed(seed)
    opened = []
    with torch.no_grad():
        for _, group in gated_layers(model):
            values = 3 * torch.randn(group.n_gates, generator=generator) if fractional else None
            mask = torch.rand(group.n_gates, generator=generator) < 0.5
            mask[torch.randint(group.n_gates, (1,), generator=generator)] = True
            group.log_alpha.copy_(torch.where(mask, 10.0, -10.0) if values is None else values)
            if values is not None:
                group.log_alpha[mask.nonzero()[0]] = 5.0
            opened.append((group.log_alpha > -1.6).double())
    return torch.cat(opened)


def max_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return (output - reference).abs().max().item() / max(1.0, reference.abs().max().item())


def check_exact(model: nn.Module, x: torch.Tensor, seeds: tuple[int, ...] = (1, 2)) -> nn.Module:
    """The three exactness checks; returns the gated model (eval mode)."""
    model = randomised(model)
    gated = ctrlsparse.gate(model, x).eval()
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(5.0)
        assert max_error(gated(x), model(x)) <= 1e-6
    assert count(gated, x) == count(model, x)
    cost = ExpectedCost(gated, x)
    for seed in seeds:
        set_pattern(gated, seed, fractional=True)
        with torch.no_grad():
            assert max_error(purge(gated, x)(x), gated(x)) <= 1e-5
        pattern = set_pattern(gated, seed)
        purged = count(purge(gated, x), x)
        costs = cost.costs(pattern)
        assert (costs["macs"].item(), costs["params"].item()) == (purged.macs, purged.params)
    return gated


def reach_macs(gated: nn.Module, x: torch.Tensor) -> int:
    """The purged model's MACs with every gate group closed but its first gate (the smallest reachable model)."""
    with torch.no_grad():
        for _, group in gated_layers(gated):
            group.log_alpha.fill_(-10.0)
            group.log_alpha[0] = 10.0
    return count(purge(gated, x), x).macs


def check_export_without_ctrlsparse(gated: nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    """The purged model of ``gated`` (eval, its gates as they are) saved with torch.export loads and runs in a
    fresh process that never imports ctrlsparse, with the gated model's output."""
    path = save_purged(purge(gated, x), x, tmp_path / "purged.pt2")
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch\n"
        f"y = torch.export.load({str(path)!r}).module()(torch.load({str(tmp_path / 'x.pt')!r}))\n"
        "assert not [n for n in sys.modules if n.startswith('ctrlsparse')], 'ctrlsparse was imported'\n"
        f"torch.save(y, {str(tmp_path / 'y.pt')!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    with torch.no_grad():
        assert max_error(torch.load(tmp_path / "y.pt"), gated(x)) <= 1e-5
