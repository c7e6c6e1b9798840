"""The density targets of a run's gated layers: one for all, or one each (torch-free, beside :mod:`ctrlsparse.density`,
which they constrain; the workflow checks a config's layer-wise lists with it before any job starts)."""

from __future__ import annotations

from collections.abc import Sequence

from ctrlsparse.errors import HParamError

# The name of a gate group of ``ctrlsparse.gate`` starts with this (``gates.<first layer it gates>``); a gated
# layer of a registered arch is named by the layer itself.
GATE_GROUP_PREFIX = "gates."


def layer_targets(
    targets: Sequence[float],
    layer_names: Sequence[str],
    arch: str,
    shown: str = "given",
    kinds: Sequence[str] | None = None,
) -> list[float]:
    """One density target per gated layer: a single target applies to every layer, else one target each, else
    (gate groups of ``kinds``: heads, width, hidden) one per kind, in the order the kinds first appear.

    ``shown`` is how the error message shows the targets (the config check shows the list itself).
    """
    n = len(layer_names)
    if len(targets) in (1, n):
        return list(targets) * (n // len(targets))
    order = list(dict.fromkeys(k for k in kinds or () if k))
    if len(order) > 1 and len(targets) == len(order) and len(kinds) == n:
        by_kind = dict(zip(order, targets, strict=True))
        return [by_kind[kind] for kind in kinds]
    per_kind = f", or one per kind ({', '.join(order)})" if len(order) > 1 else ""
    raise HParamError(
        "target",
        f"{len(targets)} layer-wise targets {shown}, but arch {arch!r} has {n} gated layers "
        f"({', '.join(layer_names)}); give one target or {n}{per_kind}",
    )
