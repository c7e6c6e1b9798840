"""Assemble ``results/report.pdf`` with reportlab: title page (config, versions), figures with captions, the
tables as real (searchable) text, and the paper's reference numbers beside ours.

``ctrlsparse report --tables results/tables --plots results/plots --config results/config.yaml --out results/report.pdf``
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ctrlsparse import feasibility
from ctrlsparse.plumbing.provenance import git_commit
from ctrlsparse.report import paper, price_table, settings_table, spread
from ctrlsparse.report.layout import Builder, escape
from ctrlsparse.report.plots import FIGURES, load_tables

SECTIONS = [
    ("control", "Control: achieved vs target density"),
    ("accuracy", "Accuracy vs density"),
    ("size", "What sparsity buys: accuracy vs purged size"),
    ("penalty", "The penalized baseline: λ vs density"),
    ("layers", "Per-layer densities"),
    ("dynamics", "Training dynamics"),
]
CONTROL_COLUMNS = [
    "data / arch",
    "scope",
    "target",
    "seeds",
    "expected density",
    "eval density",
    "max violation",
    "feasible",
    "acc. %",
]


def _versions(runs: Any) -> list[list[str]]:
    rows = [["python", platform.python_version()], ["platform", platform.platform(terse=True)]]
    for column in (c for c in runs.columns if c.startswith("version_")):
        values = sorted({str(v) for v in runs[column].dropna()})
        rows.append([column.removeprefix("version_"), ", ".join(values)])
    for package in ("snakemake", "mlflow", "pandas", "matplotlib", "reportlab"):  # the tools around the runs
        try:
            rows.append([package, version(package)])
        except PackageNotFoundError:
            continue
    rows.append(["git commit", git_commit() or "unknown"])
    return rows


def job_timing(runs: Any) -> str | None:
    """One sentence on where the train jobs' time went, or None without Snakemake's benchmarks.

    Each job's wall time (its benchmark file) splits into what the job itself measured (``train_job.json``: the
    epochs it trained, its MLflow mirror) and the rest (start-up and set-up): parts of the same job, so no share
    is negative and the shares add up to 100%.
    """
    needed = ["job_seconds", "job_training_seconds", "job_mirror_seconds"]
    if runs.empty or any(column not in runs for column in needed):
        return None
    timed = runs.dropna(subset=needed)
    if timed.empty:
        return None
    training, mirror = timed["job_training_seconds"], timed["job_mirror_seconds"]
    rest = (timed["job_seconds"] - training - mirror).clip(lower=0)  # >= 0 unless the clocks disagree
    parts = [training.sum(), mirror.sum(), rest.sum()]
    shares = percentages(parts)
    return (
        f"Train jobs: {len(timed)} jobs took {sum(parts):.0f} s in all ({sum(parts) / len(timed):.1f} s each on "
        f"average): {shares[0]}% training loops, {shares[1]}% the MLflow mirror and {shares[2]}% per-job start-up "
        "(interpreter, torch and data imports, model set-up, checkpoints)."
    )


def percentages(parts: list[float]) -> list[int]:
    """Whole percentages of ``parts`` that add up to exactly 100 (largest remainders get the leftover points)."""
    total = sum(parts)
    if total <= 0:
        return [0] * len(parts)
    exact = [100 * part / total for part in parts]
    whole = [int(value) for value in exact]
    by_remainder = sorted(range(len(parts)), key=lambda i: exact[i] - whole[i], reverse=True)
    for i in by_remainder[: 100 - sum(whole)]:
        whole[i] += 1
    return whole


def control_rows(settings: Any) -> list[list[str]]:
    fmt = settings_table.fmt
    rows = []
    for _, r in settings_table.constrained_settings(settings).iterrows():
        density = settings_table.spread_text(r, "expected_density")
        acc = settings_table.spread_text(r, "test_accuracy", percent=True)
        feasible = settings_table.feasible_cell(r)
        rows.append(
            [
                f"{r['dataset']} / {r['arch']}",
                r["target_scope"],
                str(r["target"]),
                str(int(r["seeds"])),
                density,
                fmt(r["eval_density_mean"]),
                fmt(r["max_violation_mean"], 4),
                feasible,
                acc,
            ]
        )
    return rows


def build_report(
    tables_dir: Path,
    plots_dir: Path,
    out: Path,
    *,
    config_text: str,
    paper_csv: Path | None,
    captions_dir: Path | None,
    title: str,
) -> Path:
    tables = load_tables(tables_dir)
    runs, settings = tables["runs"], tables["settings"]
    b = Builder()
    b.para(escape(title), "title")
    b.para(
        "Controlled Sparsity via Constrained Optimization (Gallego-Posada et al., NeurIPS 2022), reproduced "
        "with <b>ctrlsparse</b>: hard-concrete L0 gates trained under an explicit density constraint, "
        "beside the penalized and dense baselines."
    )
    datasets = ", ".join(sorted(set(runs["dataset"]))) if not runs.empty else "—"
    b.para(
        f"{len(runs)} runs, {len(settings)} settings; data: {datasets}. "
        f"Built {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC."
    )
    timing = job_timing(runs)
    if timing:
        b.para(timing)
    b.space()
    b.heading("Versions")
    b.table(["component", "version"], _versions(runs) if not runs.empty else [], widths=[1, 4])
    b.heading("Configuration")
    b.mono(config_text)
    b.page_break()

    captions = {name: _caption(captions_dir, name) for name in FIGURES}
    for index, (name, heading) in enumerate(SECTIONS, start=1):
        b.figure(
            plots_dir / FIGURES[name][1],
            f"<b>Figure {index}.</b> {escape(captions[name])}",
            heading=f"{index}. {heading}",
        )
        if name == "control" and not settings_table.constrained_settings(settings).empty:
            b.para(
                f"Constrained settings (mean over seeds of the last epoch; {spread.RULE}; feasible = "
                "seeds whose final expected density is at most the tolerance (0.01 unless the run set "
                "feasibility_tolerance) above each target, or within it of each target under eq; missed = some "
                "seed did not; frac. = seeds whose eval density ended more than "
                f"{feasibility.FRACTIONAL_GAP} above the expected one).",
                "caption",
            )
            b.para(f"<b>{escape(settings_table.missed_line(settings))}</b>")
            b.table(CONTROL_COLUMNS, control_rows(settings), widths=[2.2, 1, 1.5, 1.1, 2.2, 1.3, 1.4, 1.3, 1.1])
            b.space(10)

    b.page_break()
    b.heading(f"{len(SECTIONS) + 1}. All settings")
    b.para(
        f"Mean over seeds of the last epoch; {spread.RULE}. The same numbers are in "
        "tables/settings.csv (per setting), tables/runs.csv (per run) and tables/layers.csv (per layer).",
        "caption",
    )
    if not settings.empty:
        for (dataset, arch), part in settings.groupby(["dataset", "arch"], sort=False):
            b.para(f"<b>{dataset} / {arch}</b>")
            b.table(
                settings_table.MD_COLUMNS,
                settings_table.settings_rows(part),
                widths=[3, 0.8, 1, 2, 1.3, 1, 1, 1.1, 1.1, 1.7, 1],
            )
            b.space(8)

    number = len(SECTIONS) + 2
    price = price_table.price_rows(settings)
    if price:  # a grid with lambda searches: what the penalty cost beside the constrained run
        b.heading(f"{number}. The price of a penalty")
        b.para(escape(price_table.EXPLAINED), "caption")
        b.table(price_table.COLUMNS, price, widths=[2.2, 1.1, 0.7, 0.9, 1.2, 1.2, 1.4, 1.3, 1.2, 1.4, 1.3])
        number += 1
    b.heading(f"{number}. The paper's numbers beside ours")
    if paper_csv is not None and paper_csv.exists():
        header, rows, exact = paper.reference_table(paper.load_paper(paper_csv), settings)
        if exact:
            b.para(
                f"{exact} of the paper's reported settings match this grid exactly (same data or a subset of it, architecture, "
                "variant and level); they are listed with our numbers.",
                "caption",
            )
            note = paper.subset_note(settings)  # mnist5k runs stand for the paper's MNIST rows
            if note:
                b.para(f"Ours on a subset: {escape(note)}", "caption")
        else:
            b.para(
                "No setting of this grid matches one of the paper's exactly: the paper ran MNIST, CIFAR, "
                "TinyImageNet and ImageNet, this grid runs " + datasets + ". For reference, the paper's MNIST "
                "tables and its CIFAR-10 and TinyImageNet control sweeps are shown beside our runs of the same "
                "variant and level on our data (analogues, not replications: compare how close each lands "
                "to its target, not the errors). L0 = final expected density, Par = purged parameters as % of the dense model, err = test error, all in %.",
                "caption",
            )
        b.table(header, rows, widths=[2.9, 3.3, 1, 1, 1.5] + [1.8] * (len(header) - 5))
    else:
        b.para("No paper reference file given.", "caption")
    out.parent.mkdir(parents=True, exist_ok=True)
    b.build(out, title)
    return out


def _caption(captions_dir: Path | None, name: str) -> str:
    path = captions_dir / f"{name}.rst" if captions_dir else None
    return " ".join(path.read_text().split()) if path and path.exists() else FIGURES[name][0].__doc__ or name


def main(argv: list[str]) -> int:
    """``ctrlsparse report``: the PDF report from the tables and figures."""
    parser = argparse.ArgumentParser(prog="ctrlsparse report", description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="results/tables", help="directory written by ctrlsparse aggregate")
    parser.add_argument("--plots", default="results/plots", help="directory written by ctrlsparse plots")
    parser.add_argument("--config", help="the workflow's resolved config (YAML), shown on the title page")
    parser.add_argument("--paper", default="report/paper_results.csv", help="the paper's reference numbers (CSV)")
    parser.add_argument("--captions", default="report/captions", help="directory of <figure>.rst captions")
    parser.add_argument("--title", default="ctrlsparse report", help="title of the report")
    parser.add_argument("--out", default="results/report.pdf", help="the PDF to write")
    args = parser.parse_args(argv)
    config_text = Path(args.config).read_text() if args.config else "(no config given)"
    out = build_report(
        Path(args.tables),
        Path(args.plots),
        Path(args.out),
        config_text=config_text,
        paper_csv=Path(args.paper),
        captions_dir=Path(args.captions),
        title=args.title,
    )
    print(f"wrote {out}")
    return 0
