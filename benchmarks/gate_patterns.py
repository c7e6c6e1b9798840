"""Gate patterns at a target MAC share, for the latency benchmarks (``latency.py``, ``latency_layers.py``).

- :func:`random_pattern`: the gates closed in a random order (seeded), at least one gate of every set kept, the
  longest prefix whose purged MAC share (the cost model at 0/1 gates, which is the purged model's count) is at
  most the share; with rounding, the prefix chosen again for the rounded counts. About the same share of every
  set's channels goes (what a MAC budget with no data to prefer one layer does).
- :func:`uniform_pattern`: every set keeps the same fraction of its gates, bisected to the share (Torch-Pruning's
  shape, with our gates).
- :func:`steered_pattern`: the gates closed a step at a time (``multiple`` gates with rounding, else 1/32 of the
  set) in the set whose next step the latency model (:class:`ctrlsparse.cost.latency.ExpectedLatency`, the
  measured per-layer table on this machine) says saves the most time per MAC it removes, until the MAC share is
  reached: the shape a latency budget's gradient pushes toward, accuracy aside (no set below ``least`` of its
  gates: a stand-in for the accuracy a trained run weighs).

A share of 0 gives the floor: every gate set at its least (one gate; ``multiple`` with rounding), the fastest
any channel pruning of the model can be on this runtime.
"""

from __future__ import annotations

import math


def _set_counts(units, kept: list[int]) -> None:
    """Open the first ``kept[i]`` gates of set i, close the rest (log alpha +-10)."""
    import torch

    with torch.no_grad():
        for unit, k in zip(units, kept, strict=True):
            opened = torch.arange(unit.n_gates) < k
            unit.log_alpha.copy_(torch.where(opened, 10.0, -10.0).to(unit.log_alpha))


def _expected_cost(gated, x):
    from ctrlsparse.cost import ExpectedCost

    cost = getattr(gated, "_pattern_cost", None) or ExpectedCost(gated, x)
    gated._pattern_cost = cost
    return cost


def _share(gated, x) -> float:
    """The purged MAC share of ``gated``'s eval gates (rounding included)."""
    import torch

    from ctrlsparse.layers import gated_layers

    cost = _expected_cost(gated, x)
    opened = torch.cat([unit.eval_open() for _, unit in gated_layers(gated)]).double()
    return float(cost.costs(opened)["macs"]) / cost.dense_macs


def random_pattern(gated, x, share: float, multiple: int, seed: int) -> float:
    """Set the gates of ``gated`` to the longest prefix of a random closing order whose purged MAC share (rounded
    to ``multiple``) is at most ``share``; returns that share."""
    import torch

    from ctrlsparse.layers import gated_layers, round_channels_

    units = [unit for _, unit in gated_layers(gated)]
    round_channels_(gated, multiple)
    counts = [unit.n_gates for unit in units]
    total = sum(counts)
    generator = torch.Generator().manual_seed(seed)
    keep = torch.zeros(total, dtype=torch.bool)  # one gate of every set stays open
    start = 0
    for n in counts:
        keep[start + int(torch.randint(n, (1,), generator=generator))] = True
        start += n
    order = torch.randperm(total, generator=generator)
    order = order[~keep[order]]  # the closing order

    def apply(k: int) -> float:
        log_alpha = torch.full((total,), 10.0)
        log_alpha[order[:k]] = -10.0 + 8.0 * torch.arange(k, dtype=torch.float) / max(k, 1)  # later: larger
        with torch.no_grad():
            for unit, part in zip(units, log_alpha.split(counts), strict=True):
                unit.log_alpha.copy_(part)
        return _share(gated, x)

    low, high = 0, len(order)  # share falls (roughly) as k grows: the smallest k at or below the share
    if apply(high) > share:
        return apply(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if apply(middle) <= share else (middle, high)
    return apply(high)


def _next_count(n: int, k: int, multiple: int, least: int) -> int | None:
    """The set's next smaller kept count (a multiple of ``multiple`` gates, its rounding, when above 1), or None
    at its least (``least``, at least one gate; with rounding, one multiple)."""
    if multiple > 1:
        lower = (k - 1) // multiple * multiple
        return lower if lower >= max(multiple, least) else None
    lower = max(k - max(1, n // 32), least, 1)
    return lower if lower < k else None


def steered_pattern(gated, x, share: float, multiple: int, latency, least: float = 0.0) -> float:
    """Close gates where ``latency`` (an :class:`~ctrlsparse.cost.latency.ExpectedLatency` of ``gated``) says
    they save the most time per MAC, a step at a time, until the purged MAC share is at most ``share`` (or every
    set is at its least: ``least`` of its gates, at least one); returns that share. Nothing but time per MAC
    decides, so with ``least`` 0 a set can go down to one channel (a resnet18's stem and first stage, at half its
    MACs): ``least`` stands in for the accuracy a trained run would weigh."""
    import torch

    from ctrlsparse.layers import gated_layers, round_channels_

    units = [unit for _, unit in gated_layers(gated)]
    round_channels_(gated, multiple)
    cost = _expected_cost(gated, x)
    counts = [unit.n_gates for unit in units]
    multiples = [unit.rounding_multiple() for unit in units]  # gates: a grouped conv's cover several channels
    starts = [sum(counts[:i]) for i in range(len(counts))]
    kept = list(counts)
    while True:
        p = torch.cat([(torch.arange(n) < k).double() for n, k in zip(counts, kept, strict=True)])
        p.requires_grad_(True)
        macs = cost.costs(p)["macs"] / cost.dense_macs
        if float(macs.detach()) <= share:
            break
        time_grad = torch.autograd.grad(latency.milliseconds(p), p)[0]
        macs_grad = torch.autograd.grad(macs, p)[0]
        best, best_score = None, -float("inf")
        for i, (n, k) in enumerate(zip(counts, kept, strict=True)):
            lower = _next_count(n, k, multiples[i], math.ceil(least * n))
            if lower is None:
                continue
            step = slice(starts[i] + lower, starts[i] + k)
            score = float(time_grad[step].sum()) / max(float(macs_grad[step].sum()), 1e-12)
            if score > best_score:
                best, best_score = (i, lower), score
        if best is None:
            break
        kept[best[0]] = best[1]
    _set_counts(units, kept)
    return _share(gated, x)


def uniform_pattern(gated, x, share: float) -> float:
    """Every gate set keeps the same fraction of its gates (at least one), the fraction bisected to ``share`` of
    the MACs (Torch-Pruning's shape: one ratio for every layer); returns the share."""
    from ctrlsparse.layers import gated_layers

    units = [unit for _, unit in gated_layers(gated)]

    def apply(fraction: float) -> float:
        _set_counts(units, [max(1, round(fraction * unit.n_gates)) for unit in units])
        return _share(gated, x)

    low, high = 0.0, 1.0
    for _ in range(16):
        middle = (low + high) / 2
        low, high = (middle, high) if apply(middle) <= share else (low, middle)
    return apply(low)
