"""The report marks missed settings: runs.csv/settings.csv, tables.md, the control plot and the PDF."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from synthetic import write_synthetic_run

from ctrlsparse.plumbing import paths
from ctrlsparse.report import aggregate, pdf, plots, settings_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """digits MLP, 2 seeds: model-wise 0.5 met, 0.2 missed by seed 1 only, layer-wise 0.5 with fractional gates."""
    root = tmp_path_factory.mktemp("feasibility")
    for seed in (0, 1):
        common = {"dataset": "digits", "arch": "mlp", "method": "constrained", "seed": seed}
        write_synthetic_run(root / "runs", target=(0.5,), **common)
        write_synthetic_run(root / "runs", target=(0.2,), miss=0.1 * seed, **common)
        write_synthetic_run(root / "runs", target=(0.5,), target_scope="layer", eval_gap=0.1, **common)
        write_synthetic_run(root / "runs", dataset="digits", arch="mlp", method="dense", seed=seed)
    aggregate.write_tables(aggregate.find_summaries([str(root / "runs")]), root / "tables")
    return root


def test_runs_and_settings_carry_the_runs_own_verdicts(grid):
    runs = pd.read_csv(grid / "tables" / aggregate.RUNS, dtype={"level": str})
    missed = runs[runs["target_missed"].fillna("") != ""]
    assert [key.split("/")[:3] + key.split("/")[4:] for key in missed["run_key"]] == [
        ["digits", "mlp", "constrained-model~0.2", "seed~1"]
    ]
    assert missed["target_missed"].item().startswith("model at 0.") and missed["target_missed"].item().endswith("> 0.2")
    summary = json.loads(paths.summary_path(missed["run_dir"].item()).read_text())
    assert missed["max_violation"].item() == pytest.approx(summary["max_violation"])
    assert runs[runs["method"] == "dense"]["satisfied"].isna().all()
    settings = pd.read_csv(grid / "tables" / aggregate.SETTINGS, dtype={"level": str})
    by_label = {settings_table.setting_label(row): row for _, row in settings.iterrows()}
    assert by_label["constrained-model ε=0.2"]["feasible_share"] == 0.5
    assert by_label["constrained-model ε=0.5"]["feasible_share"] == 1.0
    assert by_label["constrained-layer ε=0.5"]["fractional_gates"] == 2
    assert by_label["constrained-layer ε=0.5"]["eval_density_gap_mean"] == pytest.approx(0.1)


def test_tables_mark_missed_settings_and_list_them(grid):
    text = (grid / "tables" / aggregate.MARKDOWN).read_text()
    assert "| constrained-model ε=0.2 | 2 | 0.2 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| constrained-model ε=0.2 |"))
    assert row.rstrip(" |").endswith("1/2 missed")
    layer = next(line for line in text.splitlines() if line.startswith("| constrained-layer ε=0.5 |"))
    assert layer.rstrip(" |").endswith("2/2, frac. 2")
    line = next(line for line in text.splitlines() if line.startswith("Missed targets"))
    assert line.startswith("Missed targets in 1 of 3 constrained settings: digits / mlp constrained-model ε=0.2")
    assert "Fractional gates" in line and "constrained-layer ε=0.5" in line


def test_every_constrained_run_met_its_target():
    settings = pd.DataFrame(
        [{"dataset": "d", "arch": "a", "method": "constrained", "variant": "constrained-model", "level": "0.5"}]
    ).assign(satisfied=2, seeds=2, fractional_gates=0)
    assert settings_table.missed_line(settings) == "Every constrained run met its target (1 settings)."
    assert settings_table.missed_line(settings.assign(method="dense")) == "No constrained runs in this grid."


def test_the_control_plot_crosses_out_missed_settings(grid):
    tables = plots.load_tables(grid / "tables")
    figure = plots.control_figure(tables)
    marks = [c for c in figure.axes[0].collections if c.get_label() == "target missed (some seed)"]
    assert len(marks) == 1 and marks[0].get_offsets().tolist() == [
        [0.2, pytest.approx(tables["settings"].query("level == '0.2'")["expected_density_mean"].item())]
    ]
    assert "target missed (some seed)" in [text.get_text() for text in figure.legends[0].get_texts()]


def test_the_pdf_lists_missed_settings(grid):
    pypdf = pytest.importorskip("pypdf")
    plots.write_figures(grid / "tables", grid / "plots")
    out = pdf.build_report(
        grid / "tables",
        grid / "plots",
        grid / "report.pdf",
        config_text="experiment: feasibility\n",
        paper_csv=None,
        captions_dir=ROOT / "report" / "captions",
        title="feasibility",
    )
    flat = " ".join("\n".join(page.extract_text() for page in pypdf.PdfReader(out).pages).split())
    assert "Missed targets in 1 of 3 constrained settings: digits / mlp constrained-model ε=0.2 (1/2 seeds met)" in flat
    assert "1/2 missed" in flat and "A red cross marks a setting" in flat


def test_a_budget_setting_is_labelled_by_its_budget():
    row = {"method": "constrained", "variant": "constrained-budget", "level": "macs=0.3"}
    assert settings_table.setting_label(row) == "constrained-budget macs=0.3"
    assert settings_table.setting_label(row | {"variant": "constrained-model", "level": "0.5"}) == (
        "constrained-model ε=0.5"
    )
