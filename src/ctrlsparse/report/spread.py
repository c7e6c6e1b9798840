"""The spread over seeds: one rule for the tables and the figures.

A setting with :data:`MIN_SEEDS_FOR_CI` (3) or more seeds gets the 95% Student-t interval of its mean
(mean ± t·s/√n). With fewer, no interval is claimed: 2 seeds give their range (min–max), 1 seed its value.
(From 2 seeds, t = 12.7 on one degree of freedom: seeds 20 accuracy points apart would give ±128 points.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_SEEDS_FOR_CI = 3
# Two-sided 95% Student t quantiles by degrees of freedom (avoids importing scipy).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
RULE = (
    "± is the 95% t-interval half-width over seeds (settings with 3 or more seeds); with 2 seeds, "
    "(min–max) is the range of the two; a single seed shows its value"
)
FIGURE_RULE = (
    "Bars and bands: the 95% t-interval of the mean for settings with 3 or more seeds, the range (min–max) of "
    "the seeds for 2; dots are the single seeds"
)


def ci95(std: float, n: int) -> float:
    """Half-width of the 95% t-interval of a mean of ``n`` values with sample std ``std``; NaN below 3 seeds."""
    if n < MIN_SEEDS_FOR_CI or not math.isfinite(std):
        return float("nan")
    return T95.get(n - 1, 1.96 if n > 30 else 2.1) * std / math.sqrt(n)


def interval(values: Sequence[float]) -> tuple[float, float]:
    """(low, high) of the seeds' spread by the rule above; seaborn's ``errorbar=`` takes this function."""
    values = [float(v) for v in values if math.isfinite(float(v))]
    if not values:
        return float("nan"), float("nan")
    n, mean = len(values), sum(values) / len(values)
    if n < MIN_SEEDS_FOR_CI:
        return min(values), max(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = ci95(std, n)
    return mean - half, mean + half


def text(mean: float, ci: float, low: float, high: float, seeds: int, digits: int = 3, scale: float = 1.0) -> str:
    """A table cell: ``0.512 ± 0.020`` (3+ seeds), ``0.512 (0.498–0.526)`` (2 seeds), ``0.512`` (1 seed)."""
    if not math.isfinite(mean):
        return "—"
    cell = f"{scale * mean:.{digits}f}"
    if seeds >= MIN_SEEDS_FOR_CI and math.isfinite(ci):
        cell += f" ± {scale * ci:.{digits}f}"
    elif seeds >= 2 and math.isfinite(low) and math.isfinite(high):
        cell += f" ({scale * low:.{digits}f}–{scale * high:.{digits}f})"
    return cell
