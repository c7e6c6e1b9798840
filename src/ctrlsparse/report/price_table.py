"""The price of a penalty (the paper's argument, measured): per setting, what the lambda search needed to land a
penalized run on the target density (runs and their training time) and where it ended, beside the constrained
run of the same target, which takes one run. Rows of the settings table, for ``tables.md`` and the PDF."""

from __future__ import annotations

from typing import Any

from ctrlsparse.registry import METHODS
from ctrlsparse.report.settings_table import fmt

COLUMNS = [
    "data / arch",
    "scope",
    "ε",
    "seeds",
    "search runs",
    "search s",
    "search density",
    "search acc. %",
    "constr. s",
    "constr. density",
    "constr. acc. %",
]
EXPLAINED = (
    "The price of a penalty: the λ search (penalized runs bisected over log10 λ until one ends within the "
    "tolerance of the target or its steps run out: by default the two ends and at most 6 midpoints) beside the "
    "constrained run of the same target (one run). Runs and training time (s: the training loops' seconds, summed "
    "over the search's runs) are means over seeds; density is the final expected density of the model (the "
    "search's closest run; a search aims the model's density, also layer-wise, where one λ weighs the sum of the "
    "layers' densities), acc. its test accuracy. A search that did not land within the tolerance shows its "
    "closest run, marked *."
)


def price_rows(settings: Any) -> list[list[str]]:
    """One row per search setting, with the constrained setting of the same data, arch, scope (and tag) and
    target beside it (dashes where the grid has none)."""
    if settings.empty or "method" not in settings:
        return []
    rows = []
    for _, search in settings[settings["method"].isin(METHODS.select(lambda spec: spec.priced_against))].iterrows():
        rival = METHODS.spec(search["method"]).priced_against
        variant = rival + str(search["variant"])[len(str(search["method"])) :]
        same = settings[
            (settings["dataset"] == search["dataset"])
            & (settings["arch"] == search["arch"])
            & (settings["variant"] == variant)
            & (settings["level"].astype(str) == str(search["level"]))
        ]
        constrained = same.iloc[0] if len(same) else None
        missed = search["satisfied"] < search["seeds"]
        rows.append(
            [
                f"{search['dataset']} / {search['arch']}",
                str(search["target_scope"]),
                str(search["level"]),
                str(int(search["seeds"])),
                fmt(float(search["runs_mean"]), 1),
                fmt(float(search["wall_seconds_mean"]), 1),
                fmt(float(search["expected_density_mean"])) + (" *" if missed else ""),
                fmt(float(search["test_accuracy_mean"]), percent=True),
                *(
                    [
                        fmt(float(constrained["wall_seconds_mean"]), 1),
                        fmt(float(constrained["expected_density_mean"])),
                        fmt(float(constrained["test_accuracy_mean"]), percent=True),
                    ]
                    if constrained is not None
                    else ["—"] * 3
                ),
            ]
        )
    return rows


def markdown(settings: Any) -> list[str]:
    """The section of ``tables.md`` ([] without searches)."""
    rows = price_rows(settings)
    if not rows:
        return []
    lines = ["## The price of a penalty", "", EXPLAINED, "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]
