"""Hard-concrete L0 gates (Louizos et al. 2018) with the constants and conventions of the paper.

A gate z in [0, 1] is a stretched, clamped binary-concrete variable with location log alpha:

    u ~ U(eps, 1 - eps)
    s = sigmoid((log u - log(1 - u) + log alpha) / beta)
    z = clamp(s * (zeta - gamma) + gamma, 0, 1)

Training draws one sample per layer per minibatch (shared by all examples). Evaluation uses the median of
the distribution, z = clamp(sigmoid(log alpha / beta) * (zeta - gamma) + gamma, 0, 1), which is exactly 0
iff log alpha <= -beta * ln(-zeta / gamma) = -1.599 and exactly 1 iff log alpha >= +1.599. (Louizos's
paper uses sigmoid(log alpha) without the 1/beta; the controlled-sparsity code, followed here, uses the
median.) The probability that a gate is non-zero has the closed form

    P(z != 0) = 1 - Q(s <= 0) = sigmoid(log alpha - beta * log(-gamma / zeta)),

which is what the density constraint is written in: a deterministic, differentiable function of log alpha.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BETA = 2.0 / 3.0  # temperature
GAMMA = -0.1  # lower stretch limit
ZETA = 1.1  # upper stretch limit
EPS = 1e-6  # noise and probability clamp
# log alpha is clamped to [log alpha_min, LOG_ALPHA_MAX] after every step (clamp_log_alphas_);
# alpha_min is a hyperparameter (HParams.alpha_min, default 1e-4). LOG_ALPHA_MIN is the paper's log 1e-2 (the paper
# presets' alpha_min), the clamp's floor when it is given none.
LOG_ALPHA_MIN = math.log(1e-2)
LOG_ALPHA_MAX = math.log(1e2)

# beta * log(-gamma / zeta) = -1.5986: the shift between log alpha and the logit of P(z != 0).
_ACTIVE_SHIFT = BETA * math.log(-GAMMA / ZETA)


def initial_log_alpha(droprate: float) -> float:
    """Mean of the log alpha initialisation for a drop rate d: log((1 - d) / d)."""
    if not 0.0 < droprate < 1.0:
        raise ValueError(f"droprate_init must lie in (0, 1), got {droprate}")
    return math.log((1.0 - droprate) / droprate)


def stretch(s: Tensor) -> Tensor:
    """Map a concrete sample in (0, 1) onto (gamma, zeta) and clamp it to the gate range [0, 1]."""
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def sample_gates(log_alpha: Tensor) -> Tensor:
    """One reparameterised hard-concrete sample per entry of ``log_alpha`` (differentiable in log alpha)."""
    u = torch.rand_like(log_alpha).clamp(EPS, 1.0 - EPS)
    return stretch(torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA))


def median_gates(log_alpha: Tensor) -> Tensor:
    """Deterministic evaluation gates: the median of the hard concrete (can be fractional)."""
    return stretch(torch.sigmoid(log_alpha / BETA))


def rounded_count(opened: int, total: int, multiple: int) -> int:
    """``opened`` gates of ``total`` rounded to the nearest multiple of ``multiple`` (halves up), at least one
    multiple when any is open, at most ``total``; none or all stay as they are."""
    if multiple <= 1 or opened in (0, total):
        return opened
    return min(total, max(multiple, multiple * ((2 * opened + multiple) // (2 * multiple))))


def round_open(log_alpha: Tensor, multiple: int) -> Tensor:
    """The gates kept open when a set's count of open eval gates (median non-zero) is rounded to a multiple of
    ``multiple`` (:func:`rounded_count`): those with the largest log alpha (largest P(active)), ties by
    position. Booleans, on log alpha's device."""
    opened = median_gates(log_alpha.detach()) > 0
    kept = rounded_count(int(opened.sum()), len(opened), multiple)
    if kept == int(opened.sum()):
        return opened
    order = torch.argsort(log_alpha.detach(), descending=True, stable=True)
    return torch.zeros_like(opened).index_fill_(0, order[:kept], True)


def prob_active(log_alpha: Tensor) -> Tensor:
    """P(z != 0) in closed form, clamped to [eps, 1 - eps]."""
    return torch.sigmoid(log_alpha - _ACTIVE_SHIFT).clamp(EPS, 1.0 - EPS)


# The floor of every gate set's largest log alpha (keep_a_gate_open): P(active) 0.83, eval gate 0.5, a channel
# that carries signal and gradient. The gates of droprate 0.5 start at 0 +- 0.01, so a set of n gates starts
# below it with probability 2^-n.
OPEN_LOG_ALPHA = 0.0


@torch.no_grad()
def keep_a_gate_open_(log_alphas: list[Tensor], layer_of_gate: Tensor) -> None:
    """In every gate set whose gates are all below :data:`OPEN_LOG_ALPHA`, raise the largest to it: a layer can
    shrink to one channel, open at eval, but never be cut away (a closed layer passes no gradient, so it could
    never reopen). A few kernels over all gates at once; log alphas that need nothing are left bit for bit."""
    if not log_alphas:
        return
    flat = torch.cat(log_alphas)
    layer_of_gate = layer_of_gate.to(flat.device)
    units = len(log_alphas)
    largest = flat.new_full((units,), -torch.inf).scatter_reduce(0, layer_of_gate, flat, "amax")
    position = torch.arange(len(flat), device=flat.device)
    candidates = torch.where(flat == largest[layer_of_gate], position, len(flat))
    first = torch.full((units,), len(flat), device=flat.device).scatter_reduce(0, layer_of_gate, candidates, "amin")
    raise_it = (position == first[layer_of_gate]) & (largest[layer_of_gate] < OPEN_LOG_ALPHA)  # one gate a set
    torch._foreach_copy_(log_alphas, torch.where(raise_it, OPEN_LOG_ALPHA, flat).split([a.numel() for a in log_alphas]))


@torch.no_grad()
def clamp_log_alphas_(log_alphas: list[Tensor], minimum: float = LOG_ALPHA_MIN) -> None:
    """Clamp many log alpha tensors to [minimum, log 1e2] in two multi-tensor ops (no per-layer loop)."""
    if log_alphas:
        torch._foreach_clamp_min_(log_alphas, minimum)
        torch._foreach_clamp_max_(log_alphas, LOG_ALPHA_MAX)
