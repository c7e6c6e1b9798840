"""Collect every run's ``summary.json`` into tables: ``runs.csv``, ``settings.csv``, ``layers.csv``, ``tables.md``.

- ``runs.csv``: one row per run (grid axes, final numbers, the run's directory).
- ``settings.csv``: one row per setting (dataset, arch, variant, level) over seeds: mean, std, min, max and
  the 95% t-interval half-width (3 or more seeds, else empty: :mod:`ctrlsparse.report.spread`) of densities
  and accuracy, how many seeds met their targets (``satisfied``, ``feasible_share``) and how many ended with
  fractional gates (``fractional_gates``).
- ``layers.csv``: one row per run and gated layer (expected/eval density and the layer's target).
- ``tables.md``: the settings table per dataset/arch, in Markdown, then the price of a penalty (a grid with lambda
  searches: :mod:`ctrlsparse.report.price_table`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ctrlsparse import feasibility
from ctrlsparse.constraint_kinds import COST_KEYS
from ctrlsparse.hparams.checks import budget_text
from ctrlsparse.plumbing import paths
from ctrlsparse.registry import method_spec
from ctrlsparse.report import price_table, spread
from ctrlsparse.report.settings_table import markdown

RUNS, SETTINGS, LAYERS, MARKDOWN = "runs.csv", "settings.csv", "layers.csv", "tables.md"
SETTING = ["dataset", "arch", "method", "variant", "target_scope", "level"]
STATS = [
    "expected_density",
    "eval_density",
    "test_accuracy",
    "max_violation",
    "eval_density_gap",
    "wall_seconds",
    "runs",
    "params_pct",
    "macs_pct",
    "latency_share_b1",
    "latency_share_batch",
]
# the purge's latency keys (ctrlsparse.training.purge_cli): purged and dense ms and their ratio, at batch 1 and
# at the run's latency batch
LATENCY = tuple(
    f"{kind}_{suffix}" for suffix in ("b1", "batch") for kind in ("latency_ms", "dense_latency_ms", "latency_share")
) + ("latency_batch",)
FEASIBILITY_TOL = feasibility.DEFAULT_TOLERANCE  # for summaries written before runs recorded their own
VARIANT_ORDER = [
    "constrained-model",
    "constrained-layer",
    "magnitude-layer",
    "penalized-model",
    "penalized-layer",
    "search-model",
    "search-layer",
    "dense",
]


def find_summaries(inputs: list[str]) -> list[Path]:
    """``summary.json`` files: each input is such a file or a directory searched recursively."""
    found: list[Path] = []
    for item in map(Path, inputs):
        found += [item] if item.is_file() else sorted(item.rglob(paths.SUMMARY))
    return found


class CorruptSummary(ValueError):
    """A ``summary.json`` that does not parse as a run summary; the message names the file."""


def read_summary(path: Path) -> dict[str, Any]:
    """A run's ``summary.json``; :class:`CorruptSummary` if it is not a JSON object with a run key."""
    try:
        summary = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
        raise CorruptSummary(f"{path} is not valid JSON ({error})") from None
    if not isinstance(summary, dict) or "run_key" not in summary:
        raise CorruptSummary(f"{path} holds no run summary (no run_key)")
    return summary


def run_row(summary_file: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``runs.csv`` row of one summary and its ``layers.csv`` rows."""
    s = read_summary(summary_file)
    targets = list(s.get("target") or [])
    # feasible, max_violation, ... as the run recorded them (summaries older than any of those fields: recomputed)
    recorded = all(key in s for key in feasibility.FIELDS)
    verdict = {key: s[key] for key in feasibility.FIELDS} if recorded else feasibility.assess(s)
    row = {key: s.get(key) for key in ["run_key", *SETTING, "seed", "epochs", "hparams_hash"]}
    spec = method_spec(s["method"])
    level = spec.level if spec else ""
    targeted = level == "target" and s.get("target_scope") != "none"  # none: budgets only, no density target
    row.update(
        target=",".join(f"{t:g}" for t in targets) if targeted else "",
        target_value=sum(targets) / len(targets) if targeted and targets else math.nan,
        budget=budget_text(s["budgets"]) if "budgets" in s else s.get("budget") or "",  # older summaries: the text
        penalty=s.get("penalty") if level == "penalty" else math.nan,
        max_violation=_number(verdict["max_violation"]),
        satisfied=_number(verdict["feasible"]),
        eval_density_gap=_number(verdict["eval_density_gap"]),
        fractional_gates=_number(verdict["fractional_gates"]),
        target_missed=feasibility.describe_missed(s) if verdict["feasible"] is False else "",
    )
    for key in ("expected_density", "eval_density", "test_accuracy", "test_loss", "train_loss"):
        row[key] = s.get(key)
    for key in ("sparsifiable_params", "total_params", "wall_seconds"):
        row[key] = s.get(key)
    row["runs"] = s.get("runs", 1)  # the runs it took: a search's steps, else itself
    for key in ("params", "macs", "params_pct", "macs_pct", *LATENCY):  # written by `ctrlsparse purge`
        row[key] = s.get(key, math.nan)
    for key in COST_KEYS:  # budget runs' expected and eval shares
        row[key] = s.get(key, math.nan)
    for name, version in (s.get("versions") or {}).items():
        row[f"version_{name}"] = version
    row["run_dir"] = str(summary_file.parent)
    job = train_job(summary_file.parent)  # the last train job's own split of its time
    row["job_training_seconds"] = job.get("training_seconds", math.nan)
    row["job_mirror_seconds"] = job.get("mirror_seconds", math.nan)
    expected = s.get("layer_expected_density") or {}
    evaluated = s.get("layer_eval_density") or {}
    layer_rows = []
    for index, layer in enumerate(expected):
        if level == "target" and s.get("target_scope") == "layer":
            layer_target = targets[index] if len(targets) == len(expected) else targets[0]
        else:
            layer_target = math.nan
        layer_rows.append(
            {
                **{key: row[key] for key in ["run_key", *SETTING, "seed"]},
                "layer": layer,
                "layer_index": index,
                "expected_density": expected[layer],
                "eval_density": evaluated.get(layer, math.nan),
                "layer_target": layer_target,
                "multiplier": (s.get("multipliers") or {}).get(layer, math.nan),
            }
        )
    return row, layer_rows


def _number(value: Any) -> float:
    """A summary value for a table cell: None (not applicable) becomes NaN, a bool 1.0/0.0."""
    return math.nan if value is None else float(value)


def train_job(run_dir: Path) -> dict[str, Any]:
    """The run's ``train_job.json`` (written by its last train job), or {} for runs of older code."""
    try:
        return json.loads(paths.train_job_path(run_dir).read_text())
    except (OSError, ValueError):
        return {}


def job_seconds(benchmarks: str | Path | None, run_key: str) -> float:
    """Wall time of the whole train job (process start-up included) from Snakemake's benchmark file, or NaN."""
    path = Path(benchmarks) / f"{run_key}.tsv" if benchmarks else None
    if path is None or not path.exists():
        return math.nan
    lines = path.read_text().splitlines()
    try:
        return float(lines[1].split("\t")[0])
    except (IndexError, ValueError):
        return math.nan


def aggregate(summary_files: list[Path], benchmarks: str | Path | None = None) -> tuple[Any, Any, Any]:
    """(runs, settings, layers) DataFrames of the given summaries, in report order."""
    import pandas as pd

    rows, layer_rows = [], []
    for path in summary_files:
        row, layers = run_row(path)
        row["job_seconds"] = job_seconds(benchmarks, row["run_key"])
        rows.append(row)
        layer_rows += layers
    runs = pd.DataFrame(rows)
    layers = pd.DataFrame(layer_rows)
    if runs.empty:
        return runs, pd.DataFrame(), layers
    runs["_order"] = runs["variant"].map({v: i for i, v in enumerate(VARIANT_ORDER)}).fillna(len(VARIANT_ORDER))
    runs["_level"] = runs["target_value"].fillna(runs["penalty"]).fillna(0.0)
    runs = runs.sort_values(["dataset", "arch", "_order", "_level", "level", "seed"]).drop(columns=["_order"])
    grouped = runs.groupby(SETTING, sort=False, dropna=False)
    settings = grouped.agg(
        target=("target", "first"),
        target_value=("target_value", "first"),
        penalty=("penalty", "first"),
        seeds=("seed", "count"),
        satisfied=(
            "satisfied",
            lambda v: int(v.fillna(False).astype(bool).sum()) if v.notna().any() else math.nan,
        ),
        fractional_gates=("fractional_gates", lambda v: int(v.fillna(0).sum()) if v.notna().any() else math.nan),
    ).reset_index()
    settings["feasible_share"] = settings["satisfied"] / settings["seeds"]
    for stat in STATS:
        mean = grouped[stat].mean().to_numpy()
        std = grouped[stat].std(ddof=1).to_numpy()
        settings[f"{stat}_mean"] = mean
        settings[f"{stat}_std"] = std
        settings[f"{stat}_min"] = grouped[stat].min().to_numpy()
        settings[f"{stat}_max"] = grouped[stat].max().to_numpy()
        settings[f"{stat}_ci95"] = [spread.ci95(s, n) for s, n in zip(std, settings["seeds"], strict=True)]
    settings["density_gap"] = settings["expected_density_mean"] - settings["target_value"]
    runs = runs.drop(columns=["_level"])
    return runs, settings, layers


def write_tables(summary_files: list[Path], out: str | Path, benchmarks: str | Path | None = None) -> dict[str, Path]:
    """Aggregate and write the four tables into ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, settings, layers = aggregate(summary_files, benchmarks)
    written = {name: out / name for name in (RUNS, SETTINGS, LAYERS, MARKDOWN)}
    runs.to_csv(written[RUNS], index=False)
    settings.to_csv(written[SETTINGS], index=False)
    layers.to_csv(written[LAYERS], index=False)
    text = markdown(settings) if not settings.empty else "# Results by setting\n\nNo runs.\n"
    written[MARKDOWN].write_text("\n".join([text, *price_table.markdown(settings)]))
    return written


def main(argv: list[str]) -> int:
    """``ctrlsparse aggregate SUMMARY_OR_DIR... --out DIR``."""
    parser = argparse.ArgumentParser(prog="ctrlsparse aggregate", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="summary.json files, or directories searched for them")
    parser.add_argument("--out", default="results/tables", help="directory of the tables (default: results/tables)")
    parser.add_argument("--benchmarks", help="Snakemake benchmark directory of the train jobs (<run key>.tsv)")
    args = parser.parse_args(argv)
    files = find_summaries(args.inputs)
    if not files:
        parser.error(f"no {paths.SUMMARY} found in {' '.join(args.inputs)}; run the train jobs first")
    try:
        written = write_tables(files, args.out, args.benchmarks)
    except CorruptSummary as error:
        print(
            f"ctrlsparse aggregate: error: {error}; delete it or move it aside and rerun that run's train job "
            "(the workflow does both: it resumes from the run's checkpoint)",
            file=sys.stderr,
        )
        return 2
    print(f"aggregated {len(files)} runs into {', '.join(str(p) for p in written.values())}")
    return 0
