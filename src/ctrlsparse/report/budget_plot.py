"""The budget runs' control plot: purged (and expected) MAC / parameter share against the budget."""

from __future__ import annotations

from typing import Any

from ctrlsparse.constraint_kinds import CONSTRAINT_KINDS
from ctrlsparse.hparams.checks import parse_budget
from ctrlsparse.report.canvas import empty, grid, panels, pyplot

MARKERS = {"macs": "o", "params": "s"}
COLORS = {"macs": "tab:blue", "params": "tab:orange"}


def budget_points(runs: Any) -> list[dict[str, Any]]:
    """One point per budget run and kind: budget, purged share (NaN before the purge) and expected share."""
    points = []
    if runs.empty or "budget" not in runs:
        return points
    for _, run in runs[runs["budget"].astype(object).fillna("").astype(str) != ""].iterrows():
        for kind, value in parse_budget(str(run["budget"])).items():
            points.append(
                {
                    "dataset": run["dataset"],
                    "arch": run["arch"],
                    "kind": kind,
                    "budget": value,
                    "purged": run.get(CONSTRAINT_KINDS.spec(kind).measured, float("nan")) / 100.0,
                    "expected": run.get(f"expected_{kind}", float("nan")),
                }
            )
    return points


def budget_figure(tables: dict[str, Any]) -> Any:
    """Achieved vs budget share of the dense MACs / params (purged: filled; expected: open), per data set/arch."""
    import pandas as pd

    plt = pyplot()
    found = panels(pd.DataFrame(budget_points(tables["runs"])))
    if not found:
        return empty(plt, "no MAC / parameter budget runs in this grid")
    fig, axes = grid(plt, len(found))
    for ax, panel in zip(axes[0], found, strict=False):
        _draw_panel(ax, *panel)
    fig.tight_layout()
    return fig


def _draw_panel(ax: Any, title: str, points: Any) -> None:
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="achieved = budget")
    for kind, rows in points.groupby("kind", sort=False):
        color, marker = COLORS.get(kind), MARKERS.get(kind, "o")
        ax.scatter(rows["budget"], rows["purged"], color=color, marker=marker, s=36, label=f"{kind} (purged)")
        ax.scatter(rows["budget"], rows["expected"], facecolors="none", edgecolors=color, marker=marker, s=36)
    ax.set(title=title, xlabel="budget (share of dense)", ylabel="achieved share", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.set_aspect("equal")
    ax.legend(fontsize=6, title="open: expected", title_fontsize=6)
