"""The settings table as text: its cells (a number, a spread over seeds, the feasible count), its rows, the
sentence on missed targets, and the Markdown of ``tables.md``; the PDF report sets the same rows."""

from __future__ import annotations

import math
from typing import Any

from ctrlsparse import feasibility
from ctrlsparse.registry import METHODS, method_spec
from ctrlsparse.report import spread


def fmt(value: Any, digits: int = 3, percent: bool = False) -> str:
    """A number as text for tables; NaN/None become an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if percent else f"{value:.{digits}f}"
    return str(value)


def setting_label(row: Any) -> str:
    """Short label of a setting, e.g. ``constrained-model ε=0.5`` / ``penalized-model λ=0.01`` / ``dense``; a
    budget level names itself (``constrained-budget macs=0.3``)."""
    spec = method_spec(row["method"])
    if "=" in str(row["level"]):
        return f"{row['variant']} {row['level']}"
    return f"{row['variant']} {spec.symbol}={row['level']}" if spec and spec.symbol else str(row["variant"])


MD_COLUMNS = [
    "setting",
    "seeds",
    "target",
    "expected density",
    "eval density",
    "Par %",
    "MAC %",
    "Lat. % b1",
    "Lat. % B",
    "accuracy %",
    "feasible",
]


def feasible_cell(row: Any) -> str:
    """Seeds that met their targets, ``2/2``, marked ``missed`` when any did not, and seeds with fractional
    gates (``frac. 1``); an em dash for settings without a target."""
    satisfied, seeds = row["satisfied"], int(row["seeds"])
    met = isinstance(satisfied, int | float) and math.isfinite(satisfied)
    cell = "—" if not met else f"{int(satisfied)}/{seeds}" + (" missed" if satisfied < seeds else "")
    fractional = row.get("fractional_gates", math.nan)
    if isinstance(fractional, int | float) and math.isfinite(fractional) and fractional > 0:
        cell += f", frac. {int(fractional)}"
    return cell


def constrained_settings(settings: Any) -> Any:
    """The settings of the methods whose targets are constraints (``MethodSpec.constraints``)."""
    if settings.empty:
        return settings
    return settings[settings["method"].isin(METHODS.select(lambda spec: spec.constraints))]


def missed_line(settings: Any) -> str:
    """One sentence for the report: the constrained settings where a seed missed its target, then those with
    fractional gates, or that every constrained run met its target."""
    constrained = constrained_settings(settings)
    if constrained.empty:
        return "No constrained runs in this grid."
    missed = constrained[constrained["satisfied"] < constrained["seeds"]]
    if len(missed):
        listed = "; ".join(
            f"{r['dataset']} / {r['arch']} {setting_label(r)} ({int(r['satisfied'])}/{int(r['seeds'])} seeds met)"
            for _, r in missed.iterrows()
        )
        text = f"Missed targets in {len(missed)} of {len(constrained)} constrained settings: {listed}."
    else:
        text = f"Every constrained run met its target ({len(constrained)} settings)."
    fractional = settings[settings["fractional_gates"].fillna(0) > 0]
    if len(fractional):
        listed = "; ".join(f"{r['dataset']} / {r['arch']} {setting_label(r)}" for _, r in fractional.iterrows())
        text += (
            f" Fractional gates (eval density more than {feasibility.FRACTIONAL_GAP} above the expected one, "
            f"which purging keeps) in {len(fractional)} settings: {listed}."
        )
    return text


def spread_text(row: Any, stat: str, digits: int = 3, percent: bool = False) -> str:
    """``stat`` of a settings row as a table cell with its seed spread (:func:`ctrlsparse.report.spread.text`)."""
    values = [float(row[f"{stat}_{part}"]) for part in ("mean", "ci95", "min", "max")]
    return spread.text(*values, int(row["seeds"]), 1 if percent else digits, 100.0 if percent else 1.0)


def settings_rows(settings: Any) -> list[list[str]]:
    """Rows (as text) of the settings table: one per setting, with the seed spread of :mod:`spread`."""
    out = []
    for _, r in settings.iterrows():
        feasible = feasible_cell(r)
        target = r["target"] if isinstance(r["target"], str) and r["target"] else "—"
        out.append(
            [
                setting_label(r),
                str(int(r["seeds"])),
                target,
                spread_text(r, "expected_density"),
                fmt(r["eval_density_mean"]),
                fmt(r["params_pct_mean"], 1),
                fmt(r["macs_pct_mean"], 1),
                fmt(r.get("latency_share_b1_mean", math.nan), percent=True),
                fmt(r.get("latency_share_batch_mean", math.nan), percent=True),
                spread_text(r, "test_accuracy", percent=True),
                feasible,
            ]
        )
    return out


def markdown(settings: Any) -> str:
    """``tables.md``: one settings table per dataset/arch."""
    lines = ["# Results by setting", "", f"Mean over seeds of the last epoch; {spread.RULE}.", ""]
    lines += [missed_line(settings), ""]
    for (dataset, arch), part in settings.groupby(["dataset", "arch"], sort=False):
        lines += [f"## {dataset} / {arch}", "", "| " + " | ".join(MD_COLUMNS) + " |"]
        lines.append("|" + "---|" * len(MD_COLUMNS))
        lines += ["| " + " | ".join(row) + " |" for row in settings_rows(part)]
        lines.append("")
    return "\n".join(lines)
