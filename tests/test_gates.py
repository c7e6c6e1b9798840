"""Closed forms of the hard-concrete gate against Monte-Carlo estimates and the paper's exact values."""

import math

import pytest
import torch

from ctrlsparse import gates as hc
from ctrlsparse.gates import clamp_log_alphas_


def test_constants_match_the_paper():
    assert (hc.BETA, hc.GAMMA, hc.ZETA) == (2 / 3, -0.1, 1.1)
    assert hc.LOG_ALPHA_MIN == pytest.approx(-4.60517, abs=1e-5)
    assert hc.LOG_ALPHA_MAX == pytest.approx(4.60517, abs=1e-5)


@pytest.mark.parametrize(
    ("droprate", "log_alpha"), [(0.5, 0.0), (0.3, 0.847), (0.1, 2.197), (0.05, 2.944), (0.2, 1.386)]
)
def test_initial_log_alpha(droprate, log_alpha):
    assert hc.initial_log_alpha(droprate) == pytest.approx(log_alpha, abs=1e-3)


@pytest.mark.parametrize(("droprate", "density"), [(0.5, 0.832), (0.3, 0.920), (0.05, 0.990)])
def test_initial_expected_density(droprate, density):
    assert hc.prob_active(torch.tensor(hc.initial_log_alpha(droprate))).item() == pytest.approx(density, abs=1e-3)


def test_prob_active_closed_form_shift():
    # P(z != 0) = sigmoid(log alpha + 1.5986)
    log_alpha = torch.linspace(-3, 3, 13)
    assert torch.allclose(hc.prob_active(log_alpha), torch.sigmoid(log_alpha + 1.5986), atol=1e-4)


def test_prob_active_range_under_the_clamp():
    ends = hc.prob_active(torch.tensor([hc.LOG_ALPHA_MIN, hc.LOG_ALPHA_MAX]))
    assert ends[0].item() == pytest.approx(0.047, abs=1e-3)
    assert ends[1].item() == pytest.approx(0.998, abs=1e-3)


@pytest.mark.parametrize("log_alpha", [-3.0, -1.0, 0.0, 0.8, 2.5])
def test_prob_active_matches_monte_carlo(log_alpha):
    torch.manual_seed(0)
    samples = hc.sample_gates(torch.full((400_000,), log_alpha))
    monte_carlo = (samples > 0).float().mean().item()
    # 400k Bernoulli draws: standard error <= 0.0008
    assert monte_carlo == pytest.approx(hc.prob_active(torch.tensor(log_alpha)).item(), abs=0.004)


def test_samples_lie_in_the_unit_interval_with_mass_at_both_ends():
    torch.manual_seed(0)
    samples = hc.sample_gates(torch.zeros(100_000))
    assert samples.min() == 0 and samples.max() == 1
    assert 0 < (samples == 0).float().mean() < 0.5 and 0 < (samples == 1).float().mean() < 0.5


@pytest.mark.parametrize("log_alpha", [-2.0, 0.0, 1.0])
def test_median_gate_is_the_median_of_the_samples(log_alpha):
    torch.manual_seed(0)
    samples = hc.sample_gates(torch.full((200_001,), log_alpha))
    assert samples.median().item() == pytest.approx(hc.median_gates(torch.tensor(log_alpha)).item(), abs=0.01)


def test_eval_gate_is_zero_exactly_below_minus_beta_ln_11():
    threshold = -hc.BETA * math.log(11)  # -1.5986
    log_alpha = torch.tensor([threshold - 1e-3, threshold - 1.0, threshold + 1e-3, 0.0, -threshold + 1e-3])
    z = hc.median_gates(log_alpha)
    assert z[0] == 0 and z[1] == 0
    assert 0 < z[2] < 1 and 0 < z[3] < 1
    assert z[4] == 1


def test_samples_are_differentiable_in_log_alpha():
    log_alpha = torch.zeros(1000, requires_grad=True)
    hc.sample_gates(log_alpha).sum().backward()
    assert log_alpha.grad.abs().sum() > 0


def test_clamp_is_in_place():
    log_alpha = torch.tensor([-10.0, 0.3, 10.0])
    clamp_log_alphas_([log_alpha])
    assert torch.allclose(log_alpha, torch.tensor([hc.LOG_ALPHA_MIN, 0.3, hc.LOG_ALPHA_MAX]))
