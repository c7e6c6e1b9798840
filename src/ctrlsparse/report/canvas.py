"""The report figures' common canvas: pyplot with the report's theme, one panel per data set / arch, the
placeholder figure of a grid without such runs, and legends drawn once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctrlsparse.registry import METHODS, MethodSpec


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", rc={"figure.dpi": 150, "font.size": 9, "grid.alpha": 0.5})
    return plt


def panels(frame: Any) -> list[tuple[str, Any]]:
    """(title, rows) per dataset/arch, in table order."""
    if frame.empty:
        return []
    return [(f"{d} / {a}", part) for (d, a), part in frame.groupby(["dataset", "arch"], sort=False)]


def of_methods(frame: Any, test: Callable[[MethodSpec], bool]) -> Any:
    """The rows of the methods whose spec passes ``test`` (an empty frame stays empty)."""
    return frame[frame["method"].isin(METHODS.select(test))] if not frame.empty else frame


def constrains(spec: MethodSpec) -> bool:
    """Methods whose targets are constraints (the control, layer and dynamics figures)."""
    return spec.constraints


def penalizes(spec: MethodSpec) -> bool:
    """Methods whose level is a penalty (the penalty figure)."""
    return spec.level == "penalty"


def ungated(spec: MethodSpec) -> bool:
    """Methods without gates: the dense reference of the accuracy figures."""
    return not spec.gates


def grid(plt: Any, n: int, rows: int = 1, height: float = 3.4) -> tuple[Any, Any]:
    fig, axes = plt.subplots(rows, max(n, 1), figsize=(3.8 * max(n, 1) + 0.6, height * rows), squeeze=False)
    return fig, axes


def empty(plt: Any, text: str) -> Any:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def one_legend(axes: Any, **legend: Any) -> None:
    """The legend on the first panel only (seaborn gives every panel one)."""
    for ax in list(axes.flat)[1:]:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    axes.flat[0].legend(fontsize=7, **legend)


def legend_entries(axes: Any) -> tuple[list[Any], list[str]]:
    """Legend handles and labels of all panels, each label once (a mark may appear in one panel only)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    return list(entries.values()), list(entries)
