"""The report's figures, drawn from the aggregated tables (and the runs' ``metrics.csv`` for dynamics).

``ctrlsparse plots --tables results/tables --out results/plots`` writes one PNG per entry of :data:`FIGURES`.
:func:`ctrlsparse.report.run_plot.plot_run_dynamics` draws one run's curves (the MLflow artifact).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctrlsparse.plumbing import paths
from ctrlsparse.registry import METHODS
from ctrlsparse.report import spread
from ctrlsparse.report.aggregate import LAYERS, RUNS, SETTINGS
from ctrlsparse.report.budget_plot import budget_figure
from ctrlsparse.report.canvas import (
    constrains,
    empty,
    grid,
    legend_entries,
    of_methods,
    one_legend,
    penalizes,
    pyplot,
    ungated,
)
from ctrlsparse.report.canvas import panels as panels_of
from ctrlsparse.report.compress_plot import compress_figure
from ctrlsparse.report.seeds import COLORS, MARKERS, accuracy_vs, mean_and_seeds


def control_figure(tables: dict[str, Any]) -> Any:
    """Achieved vs target density of the constrained runs, with the diagonal (the paper's "control" plot)."""
    plt = pyplot()
    runs = of_methods(tables["runs"], constrains)
    single = runs["target"].astype(str).str.match(r"^[0-9.e-]+$") if not runs.empty else None
    panels = panels_of(runs[single] if single is not None else runs)
    if not panels:
        return empty(plt, "no constrained runs with a single target in this grid")
    fig, axes = grid(plt, len(panels))
    for ax, (title, part) in zip(axes[0], panels, strict=False):
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="achieved = target")
        for variant, rows in part.groupby("variant", sort=False):
            color, marker = COLORS.get(variant), MARKERS.get(variant, "o")
            mean_and_seeds(
                ax, rows, "target_value", "expected_density", color, marker=marker, label=f"{variant} (expected)"
            )
            evaluated = rows.groupby("target_value")["eval_density"].mean()
            ax.scatter(
                evaluated.index,
                evaluated.values,
                marker=marker,
                facecolors="none",
                edgecolors=color,
                s=40,
                label=f"{variant} (eval gates, mean)",
            )
        mark_missed(ax, part)
        ax.set(title=title, xlabel="target density ε", ylabel="achieved density", xlim=(0, 1.02), ylim=(0, 1.02))
        ax.set_aspect("equal")
    handles, labels = legend_entries(axes[0])  # every panel's entries once (a red cross may be in one only)
    for ax in axes.flat:
        if ax.get_legend() is not None:
            ax.get_legend().remove()  # one legend below the panels instead
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    return fig


def mark_missed(ax: Any, runs: Any) -> None:
    """A red cross over each setting (variant, target) where some seed missed its target (``satisfied`` false),
    at the setting's mean expected density."""
    missed = runs["satisfied"].astype(str).str.lower().isin(("false", "0", "0.0"))
    keys = runs.loc[missed, ["variant", "target_value"]].drop_duplicates()
    if keys.empty:
        return
    means = runs.groupby(["variant", "target_value"])["expected_density"].mean()
    points = [(t, means[(v, t)]) for v, t in keys.itertuples(index=False)]
    ax.scatter(
        [t for t, _ in points],
        [d for _, d in points],
        marker="x",
        color="red",
        s=70,
        linewidths=1.5,
        zorder=5,
        label="target missed (some seed)",
    )


def accuracy_figure(tables: dict[str, Any]) -> Any:
    """Test accuracy vs achieved density per method; seeds as dots, bars their spread (see spread.py)."""
    plt = pyplot()
    panels = panels_of(tables["runs"])
    if not panels:
        return empty(plt, "no runs")
    fig, axes = grid(plt, len(panels))
    for ax, (title, part) in zip(axes[0], panels, strict=False):
        reference = part["variant"].isin(METHODS.select(ungated))  # untagged dense runs
        dense = 100 * part.loc[reference, "test_accuracy"]
        if not dense.empty:
            low, high = spread.interval(dense)
            ax.axhline(dense.mean(), color="black", ls="--", lw=1, label="dense")
            ax.axhspan(low, high, color="black", alpha=0.08)
        accuracy_vs(ax, part[~reference], "expected_density")
        ax.set(title=title, xlabel="achieved expected density", ylabel="test accuracy (%)", xlim=(0, 1.05))
    one_legend(axes, loc="best")
    fig.tight_layout()
    return fig


def size_figure(tables: dict[str, Any]) -> Any:
    """What sparsity buys: test accuracy vs the purged model's parameters and MACs (% of dense), per method."""
    plt = pyplot()
    runs = tables["runs"]
    if runs.empty or "params_pct" not in runs or runs["params_pct"].isna().all():
        return empty(plt, "no purged runs (the purge step adds params_pct / macs_pct to the summaries)")
    panels = panels_of(runs)
    fig, axes = grid(plt, len(panels), rows=2)
    for col, (title, part) in enumerate(panels):
        for row, (column, label) in enumerate((("params_pct", "parameters"), ("macs_pct", "MACs"))):
            ax = axes[row][col]
            accuracy_vs(ax, part, column)
            ax.set_xscale("log")
            ax.set(title=title, xlabel=f"purged {label} (% of dense)", ylabel="test accuracy (%)")
    one_legend(axes, loc="best")
    fig.tight_layout()
    return fig


def penalty_figure(tables: dict[str, Any]) -> Any:
    """Penalized baseline: λ vs achieved density (one dot per seed, line through the means, band the spread)."""
    plt = pyplot()
    panels = panels_of(of_methods(tables["runs"], penalizes))
    if not panels:
        return empty(plt, "no penalized runs in this grid")
    fig, axes = grid(plt, len(panels))
    for ax, (title, part) in zip(axes[0], panels, strict=False):
        for variant, rows in part.groupby("variant", sort=False):
            mean_and_seeds(
                ax,
                rows,
                "penalty",
                "expected_density",
                COLORS.get(variant),
                band=True,
                marker=MARKERS.get(variant, "o"),
                label=variant,
            )
        ax.set_xscale("symlog", linthresh=1e-5) if (part["penalty"] <= 0).any() else ax.set_xscale("log")
        ax.set(title=title, xlabel="penalty λ", ylabel="achieved expected density", ylim=(0, 1.05))
    one_legend(axes)
    fig.tight_layout()
    return fig


def layer_figure(tables: dict[str, Any]) -> Any:
    """Per-layer eval density of the constrained runs (mean over seeds, band the spread), model- vs layer-wise."""
    plt = pyplot()
    layers = of_methods(tables["layers"], constrains)
    panels = panels_of(layers)
    if not panels:
        return empty(plt, "no constrained runs in this grid")
    scopes = [s for s in ("model", "layer") if s in set(layers["target_scope"])]
    if not scopes:  # budget runs only (target scope none)
        return empty(plt, "no density-constrained runs in this grid")
    fig, axes = grid(plt, len(panels), rows=len(scopes), height=3.0)
    cmap = plt.get_cmap("viridis")
    for col, (title, part) in enumerate(panels):
        names = part.drop_duplicates("layer_index").sort_values("layer_index")["layer"].astype(str).tolist()
        for row, scope in enumerate(scopes):
            ax = axes[row][col]
            rows = part[part["target_scope"] == scope]
            levels = list(dict.fromkeys(rows["level"].astype(str)))
            for i, level in enumerate(levels):
                color = cmap(i / max(len(levels) - 1, 1))
                of_level = rows[rows["level"].astype(str) == level]
                mean_and_seeds(
                    ax, of_level, "layer_index", "eval_density", color, band=True, marker="o", label=f"ε={level}"
                )
                target = of_level.groupby("layer_index")["layer_target"].first()
                if target.notna().any():
                    ax.plot(target.index, target.values, ls=":", color=color, lw=1)
            ax.set_xticks(range(len(names)), names, fontsize=7)
            ax.set(title=f"{title}, {scope}-wise", xlabel="gated layer", ylabel="eval density", ylim=(0, 1.05))
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _metrics(run_dir: str | Path) -> Any:
    import pandas as pd

    return pd.read_csv(paths.metrics_path(run_dir))


LINE_STYLES = ("-", "--", "-.", (0, (1, 1)))  # one per variant of a scope (the targets' lines are dotted)


def dynamics_figure(tables: dict[str, Any]) -> Any:
    """Training dynamics of the constrained runs (first seed): density and Lagrange multiplier per epoch; runs of
    one scope that differ in a tag (e.g. the restart ablation's ``dual_restarts=false``) get their own line style."""
    plt = pyplot()
    runs = of_methods(tables["runs"], constrains)
    if runs.empty:
        return empty(plt, "no constrained runs in this grid")
    runs = runs[runs["seed"] == runs["seed"].min()]
    panels = panels_of(runs)
    scopes = [s for s in ("model", "layer") if s in set(runs["target_scope"])]
    if not scopes:
        return empty(plt, "no density-constrained runs in this grid")
    fig, axes = plt.subplots(
        2 * len(panels), len(scopes), figsize=(4.2 * len(scopes) + 0.6, 2.3 * 2 * len(panels)), squeeze=False
    )
    cmap = plt.get_cmap("viridis")
    for row, (title, part) in enumerate(panels):
        for col, scope in enumerate(scopes):
            top, bottom = axes[2 * row][col], axes[2 * row + 1][col]
            rows = part[part["target_scope"] == scope].sort_values("target_value")
            # a color per target, a line style per variant (e.g. constrained-model+dual_restarts=false: dashed)
            levels, variants = list(dict.fromkeys(rows["level"])), list(dict.fromkeys(rows["variant"]))
            for _, run in rows.iterrows():
                color = cmap(0.85 * levels.index(run["level"]) / max(len(levels) - 1, 1))  # no pale yellow
                style = LINE_STYLES[variants.index(run["variant"]) % len(LINE_STYLES)]
                tag = str(run["variant"]).partition("+")[2]
                label = f"ε={run['level']}" + (f", {tag}" if tag else "")
                metrics = _metrics(run["run_dir"])
                top.plot(metrics["epoch"], metrics["expected_density"], color=color, ls=style, label=label)
                if math.isfinite(run["target_value"]):
                    top.axhline(run["target_value"], color=color, ls=":", lw=0.8)
                multipliers = [c for c in metrics.columns if c.startswith("multiplier/")]
                if multipliers:
                    bottom.plot(metrics["epoch"], metrics[multipliers].max(axis=1), color=color, ls=style)
            top.set(title=f"{title}, {scope}-wise", ylabel="expected density", ylim=(0, 1.05))
            bottom.set(xlabel="epoch", ylabel="multiplier" + (" (max)" if scope == "layer" else ""))
            if top.lines:
                top.legend(fontsize=6, ncol=2 if len(variants) > 1 else 3)
    fig.tight_layout()
    return fig


# name -> (figure function, file name). Captions live in report/captions/<name>.rst.
FIGURES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "control": (control_figure, "control.png"),
    "accuracy": (accuracy_figure, "accuracy_vs_density.png"),
    "size": (size_figure, "accuracy_vs_size.png"),
    "penalty": (penalty_figure, "penalty_vs_density.png"),
    "layers": (layer_figure, "layer_density.png"),
    "dynamics": (dynamics_figure, "dynamics.png"),
    "budget": (budget_figure, "budget_control.png"),
    "compress": (compress_figure, "compress.png"),
}


def load_tables(tables_dir: str | Path) -> dict[str, Any]:
    import pandas as pd

    def read(name: str) -> Any:
        path = Path(tables_dir) / name
        return pd.read_csv(path, dtype={"level": str, "target": str}) if path.stat().st_size > 2 else pd.DataFrame()

    return {"runs": read(RUNS), "settings": read(SETTINGS), "layers": read(LAYERS)}


def write_figures(tables_dir: str | Path, out: str | Path) -> dict[str, Path]:
    plt = pyplot()
    tables = load_tables(tables_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (draw, filename) in FIGURES.items():
        fig = draw(tables)
        fig.savefig(out / filename, bbox_inches="tight")
        plt.close(fig)
        written[name] = out / filename
    return written


def main(argv: list[str]) -> int:
    """``ctrlsparse plots --tables DIR --out DIR``."""
    parser = argparse.ArgumentParser(prog="ctrlsparse plots", description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="results/tables", help="directory written by ctrlsparse aggregate")
    parser.add_argument("--out", default="results/plots", help="directory of the figures")
    parser.add_argument("--run", help="instead: draw one run directory's dynamics into --out (a .png path)")
    args = parser.parse_args(argv)
    if args.run:
        from ctrlsparse.report.run_plot import plot_run_dynamics

        print(plot_run_dynamics(args.run, args.out))
        return 0
    written = write_figures(args.tables, args.out)
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0
