"""Compressing a trained model: accuracy against the purged MAC share of the budget runs that start from the
dense run's weights (warm starts) and of those that start from scratch, beside the dense runs."""

from __future__ import annotations

from typing import Any

from ctrlsparse.registry import METHODS
from ctrlsparse.report.canvas import empty, grid, legend_entries, panels, pyplot, ungated

STARTS = {"warm start": ("tab:green", "o"), "from scratch": ("tab:grey", "s")}


def compress_points(runs: Any) -> Any:
    """The budget runs (with their start: warm or from scratch) and the dense runs, as plot rows."""
    import pandas as pd

    if runs.empty or "budget" not in runs:
        return pd.DataFrame()
    budget = runs["budget"].astype(object).fillna("").astype(str) != ""
    dense = runs["method"].isin(METHODS.select(ungated))
    chosen = runs[budget | dense].copy()
    warm = chosen["variant"].astype(str).str.contains(r"\+warm", regex=True)
    chosen["start"] = [  # a dense run's start is its method
        m if d else "warm start" if w else "from scratch"
        for m, d, w in zip(chosen["method"], dense[chosen.index], warm, strict=True)
    ]
    if not (chosen["start"] == "warm start").any():
        return pd.DataFrame()
    chosen["share"] = chosen["macs_pct"] / 100.0
    return chosen


def compress_figure(tables: dict[str, Any]) -> Any:
    """Test accuracy against the purged MAC share: warm starts (filled) and runs from scratch (grey) per budget,
    each run a point and each budget's mean a larger mark; the dense runs' accuracy as a dashed line."""
    plt = pyplot()
    found = panels(compress_points(tables["runs"]))
    if not found:
        return empty(plt, "no warm-start budget runs in this grid (grid.constrained.warm_budgets)")
    fig, axes = grid(plt, len(found))
    for ax, (title, rows) in zip(axes[0], found, strict=False):
        dense = rows[~rows["start"].isin(STARTS)]["test_accuracy"]
        if len(dense):
            ax.axhline(100 * dense.mean(), color="black", lw=1, ls="--", label="dense")
        for start, (color, marker) in STARTS.items():
            mine = rows[rows["start"] == start]
            if mine.empty:
                continue
            ax.scatter(100 * mine["share"], 100 * mine["test_accuracy"], color=color, marker=marker, s=14, alpha=0.5)
            means = mine.groupby("budget")[["share", "test_accuracy"]].mean()
            ax.plot(100 * means["share"], 100 * means["test_accuracy"], color=color, marker=marker, label=start)
        ax.set(title=title, xlabel="purged MACs (% of dense)", ylabel="test accuracy (%)", xscale="log")
    handles, labels = legend_entries(axes[0])
    axes[0][0].legend(handles, labels, fontsize=7)
    fig.tight_layout()
    return fig
