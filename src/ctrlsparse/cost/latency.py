"""Expected latency of a gated model: a differentiable function of the gates' P(active), built from a per-layer
latency table measured once on the target device (:mod:`ctrlsparse.cost.latency_table`).

The purged model's time is its Conv / Linear layers' plus the rest (norms, activations, pooling, additions, the
purge's index ops). The table times each layer alone at a grid of kept input columns x kept output rows (a
grouped conv: kept groups), and whole models; the rest is the dense model's time minus its layers'.
The expected latency is

    sum over layers of the layer's table, bilinearly interpolated at its expected kept columns and rows
    + the rest's fixed part + its scaling part x the expected share of the layers' output activations kept,

the rest's two parts fitted to three whole models the table times side by side, the dense one, a half-open and a
quarter-open one (:func:`measure_table`, :func:`rest_parts`),

with the expected counts the cost model's (:mod:`ctrlsparse.cost.terms`: the same channel expressions the purge
decides with). At all-open it is the measured dense latency, by construction; its share of it is what a
``latency`` budget constrains. A layer's time is not linear in its channels (vector widths, cache sizes, fixed
per-call overhead), which is why it is a measured table and not a multiple of the MACs.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor, nn

from ctrlsparse.channels.algebra import vector
from ctrlsparse.cost.latency_table import (
    LatencyTable,
    all_open,
    cache_dir,
    device_name,
    layer_channels,
    table_key,
    time_layer,
    traced_flow,
    weight_nodes,
)
from ctrlsparse.latency.measure import interleaved_times
from ctrlsparse.layers import gated_layers


def interpolate(grid: Tensor, values: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Index of the grid cell holding ``x`` (held to the grid) and its two weights (linear interpolation).

    The derivative is the one toward fewer channels (closing gates): at the grid's top, the slope of the cell
    below it; at or below its bottom, 0 (the table says nothing is saved there). Not ``clamp``, whose gradient
    is 0 at either bound: every layer of an all-open model (its count the top of its grid) had none."""
    if len(grid) == 1:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.zeros((), dtype=torch.long, device=x.device), 1.0 - zero, zero
    low_end, high_end = grid[0].to(x), grid[-1].to(x)
    x = torch.where(x <= low_end, low_end, torch.where(x > high_end, high_end, x))
    index = (torch.searchsorted(grid, x.detach().reshape(1), right=True) - 1).clamp(0, len(grid) - 2)[0]
    low, high = grid[index], grid[index + 1]
    weight = (x - low) / (high - low)
    return index, 1.0 - weight, weight


class ExpectedLatency:
    """Expected latency (ms, and share of the dense model's) of ``model`` at the table's batch, given every gate's
    P(active) (all gate sets concatenated, as :class:`~ctrlsparse.cost.ExpectedCost` takes them)."""

    def __init__(self, model: nn.Module, example: Tensor, table: LatencyTable):
        flow = traced_flow(model, example)
        nodes = weight_nodes(flow)
        if len(nodes) != len(table.layers):
            raise ValueError(f"the latency table has {len(table.layers)} layers, the model {len(nodes)}")
        self.table = table
        self.channels = [layer_channels(flow, node) for node in nodes]
        self.grids = [
            (torch.tensor(t.columns, dtype=torch.float64), torch.tensor(t.rows or [1], dtype=torch.float64))
            for t in table.layers
        ]
        self.values = [torch.tensor(t.ms, dtype=torch.float64) for t in table.layers]
        # output activations per kept row (a grouped conv: per kept group), for the rest's share
        self.activations = [float(t.positions * (t.width // t.groups if t.rows is None else 1)) for t in table.layers]
        full = sum(
            a * (t.rows[-1] if t.rows else t.columns[-1]) for a, t in zip(self.activations, table.layers, strict=True)
        )
        self.full_activations = max(full, 1.0)
        self._full_ms: float | None = None
        self.ratios: list[float] = []  # measured / predicted share of each calibration (cost/latency_calibration.py)
        self.dense_form: nn.Module | None = None  # the dense model as the calibration times it, made once

    def layer_terms(self, p: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per layer: its table interpolated at its expected kept counts (ms), and its expected output
        activations kept."""
        extended = torch.cat([p, p.new_tensor([1.0, 0.0])])
        memo: dict[int, Tensor] = {}
        terms = []
        for (columns, rows), (grid_a, grid_b), values, per_row in zip(
            self.channels, self.grids, self.values, self.activations, strict=True
        ):
            count_a = vector(columns, extended, memo).sum()
            grid_a, grid_b, values = grid_a.to(p), grid_b.to(p), values.to(p)
            i, wa0, wa1 = interpolate(grid_a, values, count_a)
            i1 = (i + 1).clamp(max=len(grid_a) - 1)
            if rows is None:
                terms.append((wa0 * values[i, 0] + wa1 * values[i1, 0], per_row * count_a))
                continue
            count_b = vector(rows, extended, memo).sum()
            j, wb0, wb1 = interpolate(grid_b, values, count_b)
            j1 = (j + 1).clamp(max=len(grid_b) - 1)
            ms = (
                wa0 * wb0 * values[i, j]
                + wa0 * wb1 * values[i, j1]
                + wa1 * wb0 * values[i1, j]
                + wa1 * wb1 * values[i1, j1]
            )
            terms.append((ms, per_row * count_b))
        return terms

    def milliseconds(self, p: Tensor) -> Tensor:
        terms = self.layer_terms(p)
        total = sum((ms for ms, _ in terms), p.new_zeros(()))
        activations = sum((kept for _, kept in terms), p.new_zeros(()))
        return total + self.table.rest_fixed_ms + self.table.rest_ms * activations / self.full_activations

    def activation_share(self, p: Tensor) -> Tensor:
        """The expected share of the layers' output activations kept (what the rest's scaling part follows)."""
        return sum((kept for _, kept in self.layer_terms(p)), p.new_zeros(())) / self.full_activations

    def uncorrected_share(self, p: Tensor) -> Tensor:
        """Expected latency as a share of the model's at all-open (the measured dense latency when the layers'
        times add up to less than it, as they do on a quiet machine)."""
        if self._full_ms is None:
            self._full_ms = float(self.milliseconds(torch.ones_like(p.detach())))
        return self.milliseconds(p) / self._full_ms

    @property
    def correction(self) -> float:
        """The factor the share is corrected by: the geometric mean of the calibrations' ratios (1 before any)."""
        return math.prod(self.ratios) ** (1 / len(self.ratios)) if self.ratios else 1.0

    def share(self, p: Tensor) -> Tensor:
        """:meth:`uncorrected_share` times the ``correction`` the run last measured (1 until it does)."""
        return self.uncorrected_share(p) * self.correction


def measure_table(model: nn.Module, example: Tensor, batch: int, device: torch.device) -> LatencyTable:
    """Time every layer of the gated ``model`` on its grid, and whole models: the dense one (purged with every gate
    open, in the inference form: what a user would deploy) and two partly open ones (every gate set's first half,
    its first quarter), one call of each in turn, the least of each over the rounds. What the layers' tables do not
    explain of them (norms, activations, pooling, additions, index ops) is the rest: a fixed part (per-call
    overhead) and a part that scales with the output activations kept, the line through the dense model's rest
    that fits the partly open ones' best (:func:`rest_parts`)."""
    from ctrlsparse.purge import deployed

    x = torch.randn(batch, *example.shape[1:], device=device)
    one = example[:1].to(device)
    timing = (x, x[:1])  # the memory format as the purge job chooses it: at the latency batch and at batch 1
    wholes = {"dense": deployed(model.to(device), one, timing=timing, dense=True).model}  # as the purge job times it
    patterns = {}
    for name, fraction in (("half", 0.5), ("quarter", 0.25)):
        partly, patterns[name] = partly_open(model, fraction)
        wholes[name] = deployed(partly.to(device), one, timing=timing).model
    # interleaved (11 to 21 rounds, about 2 s): a load that comes and goes hits every model alike, and the
    # least of each is from quiet rounds
    least = {
        name: 1000.0 * min(times)
        for name, times in interleaved_times(wholes, x, seconds=2.0, min_rounds=11, max_rounds=21).items()
    }
    flow = traced_flow(model, example)
    layers = [time_layer(node, flow, batch, device) for node in weight_nodes(flow)]
    layers_only = ExpectedLatency(model, example, LatencyTable(device_name(device), batch, least["dense"], 0.0, layers))
    ones = torch.ones_like(patterns["half"])
    rest_full = least["dense"] - float(layers_only.milliseconds(ones))
    partial = [
        (float(layers_only.activation_share(p)), least[name] - float(layers_only.milliseconds(p)))
        for name, p in patterns.items()
    ]
    slope, fixed = rest_parts(rest_full, partial)
    return LatencyTable(device_name(device), batch, least["dense"], slope, layers, fixed)


def rest_parts(rest_full: float, partial: list[tuple[float, float]]) -> tuple[float, float]:
    """(scaling part, fixed part) of the rest: the line ``fixed + scaling x activations kept`` through the dense
    model's rest (activations 1) that fits the partly open models' ``(activations kept, rest)`` best (least
    squares), both parts at least 0. Before, one half-open model, timed apart from the dense one, set the split:
    its layers' prediction error and any load during either timing went into the fixed part whole."""
    spread = sum((1.0 - kept) ** 2 for kept, _ in partial)
    if spread <= 0.0:
        return 0.0, max(rest_full, 0.0)
    slope = sum((1.0 - kept) * (rest_full - rest) for kept, rest in partial) / spread
    slope = min(max(slope, 0.0), max(rest_full, 0.0))
    return slope, max(rest_full - slope, 0.0)


def partly_open(model: nn.Module, fraction: float) -> tuple[nn.Module, Tensor]:
    """A copy of ``model`` with the first ``fraction`` of every gate set open (at least one) and the rest closed,
    and that pattern as 0/1 per gate (all sets concatenated)."""
    partly = all_open(model)
    pattern = []
    with torch.no_grad():
        for _, layer in gated_layers(partly):
            opened = torch.arange(layer.n_gates) < max(1, math.ceil(fraction * layer.n_gates))
            layer.log_alpha.copy_(torch.where(opened, 10.0, -10.0).to(layer.log_alpha))
            pattern.append(opened.double())
    return partly, torch.cat(pattern)


def latency_table(model: nn.Module, example: Tensor, batch: int, device: torch.device) -> LatencyTable:
    """The cached table of ``model`` on ``device`` at ``batch``, measured (and cached) on the first call."""
    path = cache_dir() / f"{table_key(model, example, batch, device)}.json"
    if path.exists():
        return LatencyTable.from_json(path.read_text())
    with torch.random.fork_rng(devices=[]):  # a miss draws nothing from the run's stream, as a hit does not
        table = measure_table(model, example, batch, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(table.to_json())
    temporary.replace(path)
    return table
