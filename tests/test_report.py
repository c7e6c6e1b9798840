"""Aggregation, figures and the PDF report on synthetic run directories (the train command's exact schema)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from synthetic import write_synthetic_grid, write_synthetic_run

from ctrlsparse.report import aggregate, paper, pdf, plots, run_plot, settings_table, spread

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A synthetic demo-like grid, aggregated: (root, tables dir)."""
    root = tmp_path_factory.mktemp("demo")
    write_synthetic_grid(root / "runs", epochs=6)
    aggregate.write_tables(aggregate.find_summaries([str(root / "runs")]), root / "tables")
    plots.write_figures(root / "tables", root / "plots")
    return root, root / "tables"


def test_tables_have_one_row_per_run_setting_and_layer(demo):
    _, tables = demo
    runs = pd.read_csv(tables / aggregate.RUNS)
    settings = pd.read_csv(tables / aggregate.SETTINGS, dtype={"level": str})
    layers = pd.read_csv(tables / aggregate.LAYERS)
    assert len(runs) == 2 * 10 * 2  # archs x settings x seeds
    assert len(settings) == 2 * 10
    assert (settings["seeds"] == 2).all()
    # layers: mlp has 3 gated layers, cnn 4; dense runs report none
    gated = runs[runs["method"] != "dense"]
    assert len(layers) == sum(3 if arch == "mlp" else 4 for arch in gated["arch"])
    assert list(settings["variant"].drop_duplicates()) == [
        "constrained-model",
        "constrained-layer",
        "penalized-model",
        "dense",
    ]


def test_setting_statistics_are_mean_std_and_t_interval(demo):
    _, tables = demo
    runs = pd.read_csv(tables / aggregate.RUNS, dtype={"level": str})
    settings = pd.read_csv(tables / aggregate.SETTINGS, dtype={"level": str})
    row = settings[
        (settings["arch"] == "mlp") & (settings["variant"] == "constrained-model") & (settings["level"] == "0.5")
    ]
    values = runs[(runs["arch"] == "mlp") & (runs["variant"] == "constrained-model") & (runs["level"] == "0.5")][
        "test_accuracy"
    ]
    assert row["test_accuracy_mean"].item() == pytest.approx(values.mean())
    assert row["test_accuracy_std"].item() == pytest.approx(values.std(ddof=1))
    # two seeds: no t-interval (t = 12.706 on one degree of freedom), their range instead
    assert math.isnan(row["test_accuracy_ci95"].item())
    assert (row["test_accuracy_min"].item(), row["test_accuracy_max"].item()) == (values.min(), values.max())
    assert row["target_value"].item() == 0.5
    assert row["density_gap"].item() == pytest.approx(row["expected_density_mean"].item() - 0.5)


def test_ci95_uses_student_t_from_three_seeds_and_is_nan_below():
    assert spread.ci95(1.0, 3) == pytest.approx(4.303 / math.sqrt(3))
    assert math.isnan(spread.ci95(1.0, 2)) and math.isnan(spread.ci95(1.0, 1))
    assert spread.ci95(2.0, 100) == pytest.approx(1.96 * 2.0 / 10)


def test_the_seed_spread_is_a_range_below_three_seeds_and_a_t_interval_from_three():
    assert spread.interval([0.7, 0.9]) == (0.7, 0.9)
    low, high = spread.interval([0.7, 0.8, 0.9])
    assert (low, high) == pytest.approx((0.8 - 4.303 * 0.1 / math.sqrt(3), 0.8 + 4.303 * 0.1 / math.sqrt(3)))
    assert spread.text(0.8, math.nan, 0.7, 0.9, seeds=2, digits=1, scale=100) == "80.0 (70.0–90.0)"
    assert spread.text(0.8, 0.1, 0.7, 0.9, seeds=3, digits=1, scale=100) == "80.0 ± 10.0"
    assert spread.text(0.8, math.nan, 0.8, 0.8, seeds=1) == "0.800"


def test_tables_give_two_seeds_their_range_and_three_seeds_a_t_interval(tmp_path):
    for seeds, root in (((0, 1), tmp_path / "two"), ((0, 1, 2), tmp_path / "three")):
        for seed in seeds:
            write_synthetic_run(root, dataset="digits", arch="mlp", method="dense", seed=seed)
    for root, expected in (
        (tmp_path / "two", r"^\d+\.\d \(\d+\.\d–\d+\.\d\)$"),
        (tmp_path / "three", r"^\d+\.\d ± \d\.\d$"),
    ):
        _, settings, _ = aggregate.aggregate(aggregate.find_summaries([str(root)]))
        (row,) = settings_table.settings_rows(settings)
        assert re.match(expected, row[settings_table.MD_COLUMNS.index("accuracy %")]), row
    text = settings_table.markdown(settings)
    assert "with 2 seeds, (min–max) is the range of the two" in text


def errorbar_extents(ax):
    """(x, low, high) of every vertical error bar seaborn drew on ``ax``."""
    from matplotlib.collections import LineCollection

    bars = []
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            bars += [
                (seg[0][0], min(seg[0][1], seg[1][1]), max(seg[0][1], seg[1][1])) for seg in collection.get_segments()
            ]
    return sorted(bars)


@pytest.mark.parametrize("seeds", [(0, 1), (0, 1, 2)])
def test_control_figure_bars_are_the_seed_range_or_the_t_interval(tmp_path, seeds):
    for seed in seeds:
        for target in (0.2, 0.5):
            write_synthetic_run(
                tmp_path / "runs", dataset="digits", arch="mlp", method="constrained", target=(target,), seed=seed
            )
    aggregate.write_tables(aggregate.find_summaries([str(tmp_path / "runs")]), tmp_path / "tables")
    tables = plots.load_tables(tmp_path / "tables")
    fig = plots.control_figure(tables)
    runs = tables["runs"]
    expected = []
    for target, rows in runs.groupby("target_value"):
        values = rows["expected_density"]
        if len(seeds) < 3:
            expected.append((target, values.min(), values.max()))
        else:
            half = spread.ci95(values.std(ddof=1), len(values))
            expected.append((target, values.mean() - half, values.mean() + half))
    drawn = errorbar_extents(fig.axes[0])
    assert [v for bar in drawn for v in bar] == pytest.approx([float(v) for bar in sorted(expected) for v in bar])


def test_markdown_lists_every_setting(demo):
    _, tables = demo
    text = (tables / aggregate.MARKDOWN).read_text()
    assert "## digits / mlp" in text and "## digits / cnn" in text
    assert "| constrained-layer ε=0.2 | 2 | 0.2 |" in text
    assert "| penalized-model λ=0.01 | 2 | — |" in text
    assert text.count("| dense |") == 2


def test_layer_targets_follow_per_layer_lists(tmp_path):
    write_synthetic_run(
        tmp_path, dataset="digits", arch="mlp", method="constrained", target_scope="layer", target=(0.5, 0.3, 0.7)
    )
    _, _, layers = aggregate.aggregate(aggregate.find_summaries([str(tmp_path)]))
    assert list(layers["layer_target"]) == [0.5, 0.3, 0.7]
    assert list(layers["layer"]) == ["fc1", "fc2", "fc3"]


def test_job_seconds_come_from_snakemake_benchmarks(tmp_path):
    run = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense")
    key = json.loads((run / "summary.json").read_text())["run_key"]
    bench = tmp_path / "bench" / f"{key}.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    runs, _, _ = aggregate.aggregate([run / "summary.json"], tmp_path / "bench")
    assert runs["job_seconds"].item() == 12.5


def test_job_timing_splits_each_jobs_own_time_so_no_share_is_negative(tmp_path):
    runs = []
    for seed, (job, trained, mirror) in enumerate([(10.0, 4.0, 1.0), (6.0, 0.0, 0.5), (20.0, 15.0, 2.0)]):
        run = write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense", seed=seed)
        key = json.loads((run / "summary.json").read_text())["run_key"]
        bench = tmp_path / "bench" / f"{key}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(f"s\th:m:s\n{job}\t0:00:10\n")
        # the summary's wall_seconds covers every epoch ever trained (resumed runs: earlier jobs too); the
        # job's own record only what this job did, e.g. nothing for a rerun that only re-summarises
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "wall_seconds": 100.0}))
        (run / "train_job.json").write_text(json.dumps({"training_seconds": trained, "mirror_seconds": mirror}))
        runs.append(run / "summary.json")
    table, _, _ = aggregate.aggregate(runs, tmp_path / "bench")
    sentence = pdf.job_timing(table)
    assert sentence.startswith("Train jobs: 3 jobs took 36 s in all (12.0 s each on average): ")
    shares = [int(v) for v in re.findall(r"(-?\d+)% ", sentence)]
    assert shares == [53, 10, 37] and sum(shares) == 100  # 19 s training, 3.5 s mirror, 13.5 s the rest


def test_percentages_add_up_to_100():
    assert pdf.percentages([1.0, 1.0, 1.0]) == [34, 33, 33]
    assert pdf.percentages([0.994, 0.003, 0.003]) == [100, 0, 0]  # 99.4 + 0.3 + 0.3: the largest remainder
    assert pdf.percentages([0.2, 0.304, 0.496]) == [20, 30, 50]
    assert pdf.percentages([0.0, 0.0]) == [0, 0]


def test_aggregate_cli_rejects_an_empty_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        aggregate.main([str(tmp_path), "--out", str(tmp_path / "tables")])
    assert "no summary.json found" in capsys.readouterr().err


def test_figures_are_written_for_every_entry(demo):
    root, _ = demo
    for _, filename in plots.FIGURES.values():
        # the synthetic grid has no budget runs: that figure is the one-line "no budget runs" placeholder
        smallest = 2_000 if filename == "budget_control.png" else 10_000
        assert (root / "plots" / filename).stat().st_size > smallest, filename


def test_figures_survive_a_grid_without_constrained_or_penalized_runs(tmp_path):
    write_synthetic_run(tmp_path / "runs", dataset="digits", arch="mlp", method="dense")
    aggregate.write_tables(aggregate.find_summaries([str(tmp_path / "runs")]), tmp_path / "tables")
    written = plots.write_figures(tmp_path / "tables", tmp_path / "plots")
    assert all(path.exists() for path in written.values())


def test_run_dynamics_plot(tmp_path):
    run = write_synthetic_run(tmp_path, dataset="digits", arch="cnn", method="constrained", target_scope="layer")
    out = run_plot.plot_run_dynamics(run, run / "dynamics.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pdf_has_tables_as_text_figures_and_paper_numbers(demo):
    pypdf = pytest.importorskip("pypdf")
    root, tables = demo
    out = pdf.build_report(
        tables,
        root / "plots",
        root / "report.pdf",
        config_text="experiment: synthetic-demo\ngrid:\n  seeds: [0, 1]\n",
        paper_csv=ROOT / "report" / "paper_results.csv",
        captions_dir=ROOT / "report" / "captions",
        title="ctrlsparse report: synthetic",
    )
    reader = pypdf.PdfReader(out)
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    assert "ctrlsparse report: synthetic" in flat
    assert "experiment: synthetic-demo" in flat
    for number in range(1, 6):
        assert f"Figure {number}." in flat
    settings = pd.read_csv(tables / aggregate.SETTINGS, dtype={"level": str, "target": str})
    for row in settings_table.settings_rows(settings):  # every table cell is real text
        assert row[0] in flat
        assert row[3] in flat, row
        assert row[5] in flat, row
    assert "tinyimagenet / resnet18" in flat and "digits / mlp (analogue)" in flat
    assert "No setting of this grid matches" in flat
    assert len(reader.pages) >= 6


def test_paper_rows_match_exactly_when_the_grid_has_the_setting():
    rows = paper.load_paper(ROOT / "report" / "paper_results.csv")
    assert {row["variant"] for row in rows} <= {
        "constrained-model",
        "constrained-layer",
        "penalized-model",
        "penalized-layer",
        "dense",
    }
    settings = pd.DataFrame(
        [
            {
                "dataset": "mnist",
                "arch": "mlp",
                "variant": "constrained-layer",
                "level": "0.3",
                "expected_density_mean": 0.31,
                "params_pct_mean": 7.2,
                "test_accuracy_mean": 0.98,
            }
        ]
    )
    header, table, exact = paper.reference_table(rows, settings)
    assert exact == 1
    assert header[-1] == "ours: L0 % / Par % / err %"
    assert table == [["mnist / mlp", "constrained-layer ε=0.3", "30.87", "7.59", "2.19 ± 0.12", "31.0 / 7.2 / 2.0"]]
    settings["dataset"] = "digits"  # no exact match: the control rows with one analogue column per data/arch
    header, table, exact = paper.reference_table(rows, settings)
    assert exact == 0 and header[-1] == "digits / mlp (analogue): L0 % / Par % / err %"
    assert ["mnist / mlp", "constrained-layer ε=0.3", "30.87", "7.59", "2.19 ± 0.12", "31.0 / 7.2 / 2.0"] in table
    assert any(row[0] == "tinyimagenet / resnet18" for row in table)


def test_aggregating_1000_runs_keeps_every_run(tmp_path):
    # How long it takes is measured side by side in benchmarks/aggregate_scaling.py, never asserted here.
    settings = [{"method": "constrained", "target_scope": "model", "target": (t / 100,)} for t in range(1, 101)]
    for setting in settings:
        for seed in range(10):
            write_synthetic_run(tmp_path / "runs", epochs=3, dataset="digits", arch="mlp", seed=seed, **setting)
    written = aggregate.write_tables(aggregate.find_summaries([str(tmp_path / "runs")]), tmp_path / "tables")
    assert len(pd.read_csv(written[aggregate.RUNS])) == 1000


def test_tables_show_par_and_mac_percent_and_the_magnitude_rows(tmp_path):
    for seed in (0, 1):
        for setting in ({"method": "magnitude", "target_scope": "layer", "target": (0.5,)}, {"method": "dense"}):
            write_synthetic_run(tmp_path / "runs", dataset="digits", arch="cnn", seed=seed, **setting)
    written = aggregate.write_tables(aggregate.find_summaries([str(tmp_path / "runs")]), tmp_path / "tables")
    text = written[aggregate.MARKDOWN].read_text()
    assert "| Par % | MAC % | Lat. % b1 | Lat. % B |" in text
    row = next(line for line in text.splitlines() if line.startswith("| magnitude-layer ε=0.5 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "0.5" and all(float(cell) < 50 for cell in cells[5:9])
    dense = next(line for line in text.splitlines() if line.startswith("| dense |"))
    assert "| 100.0 | 100.0 | 100.0 | 100.0 |" in dense


def test_the_compress_figure_draws_warm_starts_beside_runs_from_scratch_and_dense():
    import pandas as pd

    from ctrlsparse.report.compress_plot import compress_figure, compress_points

    rows = [{"method": "dense", "variant": "dense", "budget": "", "macs_pct": 100.0, "test_accuracy": 0.98}]
    for variant, accuracy in (("constrained-budget+warm+epochs=100", 0.95), ("constrained-budget+epochs=250", 0.9)):
        for budget, share in (("macs=0.1", 10.2), ("macs=0.05", 5.1)):
            rows.append(
                {
                    "method": "constrained",
                    "variant": variant,
                    "budget": budget,
                    "macs_pct": share,
                    "test_accuracy": accuracy,
                }
            )
    runs = pd.DataFrame(rows).assign(dataset="digits", arch="cnn")
    points = compress_points(runs)
    assert list(points["start"]) == ["dense", "warm start", "warm start", "from scratch", "from scratch"]
    figure = compress_figure({"runs": runs})
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.get_lines()] == ["dense", "warm start", "from scratch"]
    assert compress_points(runs[runs["variant"] != "constrained-budget+warm+epochs=100"]).empty  # no warm runs
