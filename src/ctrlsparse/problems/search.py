"""Method ``search``: what the paper's method replaces. The penalized method (loss + lambda x density), bisected over
log10 lambda until one of its runs ends within the tolerance of the target density.

The authors' baseline (``custom_experiments/bisection``): ``scipy.optimize.bisect`` of final density - target
over log10 lambda in [-3, 0] with ``maxiter=6``, i.e. the two ends, then up to 6 midpoints, each a full
training run; MNIST MLP, model- and layer-wise (the layer-wise penalty is one lambda on the sum of the layers'
densities, so one lambda can only aim the *model's* density: both scopes aim it here too). Here each step is a
real penalized run with its own run key (``penalized-model~0.03162/...``), trained or found finished, and the
bisection stops as soon as a run lands within the tolerance (the feasibility tolerance, 0.01 by default) or the
steps run out. lambda is 10^x rounded to 4 significant digits, so that the run keys read well; the ends of the
default interval are the penalized grid's 0.001 and 1, so a grid that lists them trains them once.

Torch-free: the bisection takes the density of a run as a function (the driver that trains the runs is
:mod:`ctrlsparse.training.search`), so the tests run it on closed-form stand-ins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ctrlsparse.hparams import HParams
from ctrlsparse.registry import METHODS


def penalty_at(log10_penalty: float) -> float:
    """lambda = 10^x, rounded to 4 significant digits (the run's key shows it)."""
    return float(f"{10.0**log10_penalty:.4g}")


@dataclass(frozen=True)
class Step:
    """One run of the search: where it was (log10 lambda), the lambda it trained with, where it ended."""

    log10_penalty: float
    penalty: float
    density: float


@dataclass
class Outcome:
    """The steps in the order they ran, the one closest to the target, and how the search ended."""

    steps: list[Step] = field(default_factory=list)
    bracketed: bool = True  # the two ends lay on both sides of the target (else no bisection was possible)
    converged: bool = False  # a run landed within the tolerance
    errors: list[float] = field(default_factory=list)  # density - target of each step

    @property
    def chosen(self) -> int:
        """Index of the step whose density is closest to the target (the first of equals)."""
        return min(range(len(self.steps)), key=lambda i: abs(self.errors[i]))


class PenaltySearch:
    """The registry's entry for ``search`` (not a training problem: it trains no model of its own, but runs of
    the method its spec names, ``MethodSpec.runs_of``, at the lambdas the bisection picks)."""

    def __init__(self, target: float, low: float, high: float, iterations: int, tolerance: float):
        self.target, self.low, self.high = target, low, high
        self.iterations, self.tolerance = iterations, tolerance

    @classmethod
    def of(cls, hparams: Any) -> PenaltySearch:
        """The search a run's hyperparameters ask for (target, ``search_range``, ``search_iterations``, and the
        feasibility tolerance as the stopping rule)."""
        low, high = hparams.search_range
        return cls(hparams.target[0], low, high, hparams.search_iterations, hparams.feasibility_tolerance)

    def run(self, density_of: Callable[[float], float]) -> Outcome:
        """Bisect: ``density_of(lambda)`` is the final expected density of the penalized run at lambda (which
        falls as lambda grows). The ends first; then, while the target lies between the two current bounds and
        no run is within the tolerance, the midpoint of log10 lambda, at most ``iterations`` times."""
        outcome = Outcome()

        def visit(x: float) -> float:
            penalty = penalty_at(x)
            density = density_of(penalty)
            outcome.steps.append(Step(x, penalty, density))
            outcome.errors.append(density - self.target)
            outcome.converged = outcome.converged or abs(density - self.target) <= self.tolerance
            return density - self.target

        low, high = self.low, self.high
        f_low = visit(low)
        if outcome.converged:
            return outcome
        f_high = visit(high)
        if outcome.converged:
            return outcome
        if math.copysign(1.0, f_low) == math.copysign(1.0, f_high):
            outcome.bracketed = False  # both ends on one side: the interval misses the target
            return outcome
        for _ in range(self.iterations):
            middle = (low + high) / 2
            f_middle = visit(middle)
            if outcome.converged:
                break
            if math.copysign(1.0, f_middle) == math.copysign(1.0, f_low):
                low, f_low = middle, f_middle
            else:
                high = middle
        return outcome

    @classmethod
    def step(cls, hparams: HParams, penalty: float) -> HParams:
        """The run of one step: the search's hyperparameters with the method it runs at ``penalty``, and the
        target and the search's own fields at their defaults, so that a step is exactly the run that a penalized
        grid point of the same lambda trains (one run key, trained once)."""
        defaults = {f.name: f.default for f in fields(HParams)}
        reset = {name: defaults[name] for name in ("target", "search_range", "search_iterations")}
        return replace(hparams, method=METHODS.spec(hparams.method).runs_of, penalty=penalty, **reset)

    def candidates(self) -> list[float]:
        """Every lambda the search may visit: the ends and the midpoints down to ``iterations`` levels (the
        workflow trains the grid's runs at these lambdas before the search, which then finds them finished)."""
        points = {self.low, self.high}
        intervals = [(self.low, self.high)]
        for _ in range(self.iterations):
            intervals = [half for a, b in intervals for half in ((a, (a + b) / 2), ((a + b) / 2, b))]
            points |= {b for _, b in intervals}
        return sorted({penalty_at(x) for x in points})
