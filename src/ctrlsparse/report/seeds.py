"""A statistic over seeds, drawn with seaborn: the mean per x, the seed spread of :func:`spread.interval` as
bars or a band (a t-interval from 3 seeds on, the range below), and every seed as a dot. Colours and markers
of the methods, shared by the report's figures."""

from __future__ import annotations

from typing import Any

from ctrlsparse.registry import METHODS
from ctrlsparse.report import spread
from ctrlsparse.report.aggregate import SETTING
from ctrlsparse.report.canvas import ungated

COLORS = {
    "constrained-model": "tab:blue",
    "constrained-layer": "tab:orange",
    "penalized-model": "tab:green",
    "penalized-layer": "tab:red",
    "magnitude-layer": "tab:purple",
    "dense": "black",
}
MARKERS = {
    "constrained-model": "o",
    "constrained-layer": "s",
    "penalized-model": "^",
    "penalized-layer": "v",
    "magnitude-layer": "D",
}


def with_setting_means(runs: Any, columns: list[str]) -> Any:
    """``runs`` plus ``<column>_setting``: the mean of each column over the seeds of the run's setting."""
    keys = [key for key in SETTING if key in runs]
    means = runs.groupby(keys, dropna=False)[columns].transform("mean")
    return runs.assign(**{f"{column}_setting": means[column] for column in columns})


def mean_and_seeds(
    ax: Any, rows: Any, x: str, y: str, color: Any, x_of_mean: str | None = None, band: bool = False, **line: Any
) -> None:
    """The mean of ``y`` per ``x_of_mean`` (default ``x``) with the seed spread of :func:`spread.interval` as bars
    (or a band), drawn by seaborn, and every seed as a small dot at its own (``x``, ``y``)."""
    import seaborn as sns

    style = {"err_style": "band"} if band else {"err_style": "bars", "err_kws": {"capsize": 2.5, "elinewidth": 1}}
    sns.lineplot(
        data=rows,
        x=x_of_mean or x,
        y=y,
        estimator="mean",
        errorbar=spread.interval,
        color=color,
        ax=ax,
        markersize=5,
        **style,
        **line,
    )
    sns.scatterplot(data=rows, x=x, y=y, color=color, s=9, alpha=0.5, linewidth=0, legend=False, ax=ax)


def accuracy_vs(ax: Any, part: Any, column: str) -> None:
    """Test accuracy (%) vs ``column`` per method: means with the seed spread of the accuracy, seeds as dots."""
    part = with_setting_means(part.assign(accuracy_pct=100 * part["test_accuracy"], x=part[column]), ["x"])
    for variant, rows in part.groupby("variant", sort=False):
        if rows["x"].isna().all():
            continue
        mean_and_seeds(
            ax,
            rows,
            "x",
            "accuracy_pct",
            COLORS.get(variant),
            x_of_mean="x_setting",
            marker=MARKERS.get(variant, "o"),
            label=variant,
            linestyle="" if variant in METHODS.select(ungated) else "-",
        )
