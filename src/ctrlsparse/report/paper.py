"""The paper's reference numbers (``report/paper_results.csv``) beside ours.

A paper row *matches* one of our settings when dataset, arch, variant and level are all equal. Where the grid
has no exact match (e.g. the digits demo, which the paper never ran), :func:`reference_rows` pairs each paper
control row with our setting of the same variant and level on our data, labelled as an analogue.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

KEY = ("dataset", "arch", "variant", "level")
# The paper's "control" evidence (targets and λ sweeps), shown when nothing matches exactly.
CONTROL_TABLES = ("mlp_table", "lenet_table", "cifar10_control", "tinyimagenet_control")


def load_paper(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _ours(settings: Any) -> dict[tuple[str, ...], Any]:
    if settings.empty:
        return {}
    return {tuple(str(row[k]) for k in KEY): row for _, row in settings.iterrows()}


def _pct(value: Any, scale: float = 100.0) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if not math.isfinite(number) else f"{scale * number:.1f}"


def _paper_setting(row: dict[str, str]) -> str:
    symbol = "λ" if row["variant"].startswith("penalized") else "ε"
    text = f"{row['variant']} {symbol}={row['level']}" if row["variant"] != "dense" else "dense"
    return text + (f", gates lr {row['gates_lr']}" if row.get("gates_lr") else "")


def reference_rows(paper: list[dict[str, str]], settings: Any) -> tuple[list[list[str]], int]:
    """Table rows (text) for the report and the number of exact matches.

    Columns: paper data/arch, setting, paper L0 %, paper err %, ours (data/arch, or "analogue: ..."),
    our expected density %, our error %.
    """
    ours = _ours(settings)
    exact = [row for row in paper if tuple(row[k] for k in KEY) in ours]
    rows: list[list[str]] = []
    if exact:
        chosen, analogues = exact, False
    else:
        chosen, analogues = [row for row in paper if row["table"] in CONTROL_TABLES], True
    for row in chosen:
        matches = (
            [ours[tuple(row[k] for k in KEY)]]
            if not analogues
            else [s for key, s in ours.items() if key[2:] == (row["variant"], row["level"])]
        )
        base = [f"{row['dataset']} / {row['arch']}", _paper_setting(row), row["l0_pct"] or "—", _err(row)]
        if not matches:
            rows.append(base + ["—", "—", "—"])
        for match in matches:
            where = f"{match['dataset']} / {match['arch']}"
            rows.append(
                base
                + [
                    where if not analogues else f"{where} (analogue)",
                    _pct(match["expected_density_mean"]),
                    _pct(1 - match["test_accuracy_mean"]) if _is_number(match["test_accuracy_mean"]) else "—",
                ]
            )
    return rows, len(exact)


def _err(row: dict[str, str]) -> str:
    if not row["err_pct"]:
        return "—"
    return row["err_pct"] + (f" ± {row['err_ci95']}" if row.get("err_ci95") else "")


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


REFERENCE_COLUMNS = [
    "paper data / arch",
    "setting",
    "paper L0 %",
    "paper err %",
    "ours",
    "our L0 %",
    "our err %",
]
