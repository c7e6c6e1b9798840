"""The real workflow through Snakemake: lint, and a tiny run (smoke preset: 3 train jobs, 2 epochs) into a
temporary project directory that must produce tables, figures, the PDF (under results/<experiment>/), MLflow
runs, and no duplicates on a rerun.

The first run takes ~40 s on 2 idle cores (mostly per-job imports); the rerun + HTML report is marked slow."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from workflow_cli import ROOT, SNAKEMAKE, merged, preset, readable, runs_of, snakemake

SMOKE = ROOT / "workflow" / "presets" / "smoke.yaml"
SMOKE_KEYS = [run.key for run in runs_of(preset("smoke"))]
SMOKE_RESULTS = "results/ctrlsparse-smoke"  # the grid's own tables, figures and report


def test_smoke_keys_are_the_four_methods():
    assert [readable(key) for key in SMOKE_KEYS] == [
        "digits/mlp/constrained-model~0.5/seed~0",
        "digits/mlp/penalized-model~0.01/seed~0",
        "digits/mlp/dense~1/seed~0",
        "digits/mlp/magnitude-layer~0.5/seed~0",
    ]


def mlflow_runs(workdir: Path, deleted: bool = False, experiment: str = "ctrlsparse-smoke") -> list:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'results' / 'mlflow' / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
    return client.search_runs([found.experiment_id], run_view_type=view, max_results=1000)


def test_lint_is_clean(tmp_path):
    command = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--lint"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    pytest.importorskip("ctrlsparse.training.cli")
    workdir = tmp_path_factory.mktemp("smoke")
    snakemake(workdir, "--configfile", str(SMOKE), "--cores", "2", "--profile", str(ROOT / "profiles" / "local"))
    return workdir


def test_smoke_run_produces_runs_tables_figures_and_the_pdf(smoke_run):
    results = smoke_run / "results"
    for key in SMOKE_KEYS:
        summary = json.loads((results / "runs" / key / "summary.json").read_text())
        assert summary["run_key"] == key and summary["epochs"] == 2
        assert 0 < summary["params_pct"] <= 100 and (results / "runs" / key / "purged.pt2").stat().st_size > 0
        assert (results / "logs" / "train" / f"{key}.log").stat().st_size > 0
    grid = smoke_run / SMOKE_RESULTS
    for name in ("runs.csv", "settings.csv", "layers.csv", "tables.md"):
        assert (grid / "tables" / name).stat().st_size > 0
    # every constrained run is judged: the smoke run's verdict reaches its log and the tables' first line
    judged = json.loads((results / "runs" / SMOKE_KEYS[0] / "summary.json").read_text())
    log = (results / "logs" / "train" / f"{SMOKE_KEYS[0]}.log").read_text()
    tables = (grid / "tables" / "tables.md").read_text()
    if judged["feasible"]:
        assert "target missed" not in log and "Every constrained run met its target" in tables
    else:
        assert "target missed: model at" in log and "Missed targets in 1 of 1 constrained settings" in tables
    assert len((grid / "tables" / "runs.csv").read_text().splitlines()) == 1 + len(SMOKE_KEYS)
    figures = sorted(p.name for p in (grid / "plots").glob("*.png"))
    assert figures == sorted(
        [
            "control.png",
            "accuracy_vs_density.png",
            "accuracy_vs_size.png",
            "penalty_vs_density.png",
            "layer_density.png",
            "dynamics.png",
            "budget_control.png",
            "compress.png",
        ]
    )
    pdf = (grid / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
    assert "experiment: ctrlsparse-smoke" in (grid / "config.yaml").read_text()


def test_smoke_run_mirrors_every_run_to_mlflow_with_tags(smoke_run):
    runs = mlflow_runs(smoke_run)
    assert sorted(r.data.tags["run_key"] for r in runs) == sorted(SMOKE_KEYS)
    for run in runs:
        tags = run.data.tags
        assert tags["mlflow.runName"] == tags["run_key"]
        assert {"dataset", "arch", "method", "variant", "level", "seed", "git_commit", "hparams_hash"} <= set(tags)
        assert run.data.params["epochs"] == "2"
        assert run.data.metrics["params_pct"] > 0  # added by the purge job, which mirrors the run again


def test_smoke_run_job_time_shares_are_parts_of_each_job_and_add_up_to_100(smoke_run):
    import pandas as pd

    from ctrlsparse.report.pdf import job_timing

    (runs_csv,) = (smoke_run / "results").rglob("runs.csv")
    runs = pd.read_csv(runs_csv)
    assert len(runs) == len(SMOKE_KEYS) and runs["job_seconds"].notna().all()
    assert (runs["job_training_seconds"] > 0).all() and (runs["job_mirror_seconds"] > 0).all()
    assert (runs["job_training_seconds"] + runs["job_mirror_seconds"] < runs["job_seconds"]).all()
    shares = [int(share) for share in re.findall(r"(-?\d+)% ", job_timing(runs))]
    assert len(shares) == 3 and min(shares) >= 0 and sum(shares) == 100, job_timing(runs)


def test_smoke_runs_in_mlflow_have_the_training_times_and_the_data_set(smoke_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{smoke_run / 'results' / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ctrlsparse-smoke")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens the runs table
    for run in mlflow_runs(smoke_run):
        seconds = (run.info.end_time - run.info.start_time) / 1000
        assert seconds == pytest.approx(run.data.metrics["wall_seconds"], abs=0.002), run.data.tags["run_key"]
        (entry,) = run.inputs.dataset_inputs
        assert entry.dataset.name == "digits" and json.loads(entry.dataset.profile)["test_size"] == 360


@pytest.mark.slow
def test_rerun_replaces_mlflow_runs_without_duplicates_and_builds_the_html_report(smoke_run):
    before = {r.data.tags["run_key"]: r.info.run_id for r in mlflow_runs(smoke_run)}
    snakemake(smoke_run, "--configfile", str(SMOKE), "--cores", "2", "--forcerun", "train")
    after = mlflow_runs(smoke_run, deleted=True)
    assert sorted(r.data.tags["run_key"] for r in after) == sorted(SMOKE_KEYS)
    assert not set(before.values()) & {r.info.run_id for r in after}  # replaced, not duplicated
    snakemake(smoke_run, "--configfile", str(SMOKE), "--report", f"{SMOKE_RESULTS}/report.html")
    html = (smoke_run / SMOKE_RESULTS / "report.html").read_text()
    assert "control.png" in html and "Control: achieved vs target density" in html


def test_conda_env_and_local_profile_are_well_formed():
    import yaml

    env = yaml.safe_load((ROOT / "envs" / "ctrlsparse.yaml").read_text())
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]
    deploy = (ROOT / "envs" / "ctrlsparse.post-deploy.sh").read_text()
    assert 'pip install --no-input -e "${CTRLSPARSE_SOURCE' in deploy
    assert "CTRLSPARSE_SOURCE=workflow.basedir" in (ROOT / "workflow" / "rules" / "common.smk").read_text()
    profile = yaml.safe_load((ROOT / "profiles" / "local" / "config.v8+.yaml").read_text())
    assert profile["keep-going"] is True and profile["printshellcmds"] is True


def test_make_demo_builds_and_names_the_default_grids_own_report():
    experiment = merged()["experiment"]
    result = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"--report results/{experiment}/report.html" in result.stdout
    assert f"report: results/{experiment}/report.pdf" in result.stdout


def test_a_budget_grid_trains_purges_and_tabulates_its_runs(tmp_path):
    """grid.constrained.budgets: one run per budget (no density target) through train, purge, tables and report;
    grid.constrained.warm_budgets: the same budget from the dense run's weights (a warm start)."""
    update = {
        "experiment": "ctrlsparse-budget",
        "grid": {
            "archs": ["mlp"],
            "seeds": [0],
            "constrained": {"scopes": ["model"], "targets": [], "budgets": ["macs=0.5"], "warm_budgets": ["macs=0.5"]},
            "penalized": {"penalties": []},
            "magnitude": {"targets": []},
            "dense": True,
        },
        "hparams": {"epochs": 30},
    }
    runs = runs_of(update)
    key, warm, dense = (run.key for run in runs)
    assert readable(key) == "digits/mlp/constrained-budget~macs=0.5/seed~0"
    assert readable(warm) == "digits/mlp/constrained-budget+warm~macs=0.5/seed~0" and runs[1].pretrained == dense
    config = tmp_path / "budget.yaml"
    config.write_text(json.dumps(update))
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake(workdir, "--configfile", str(config), "--cores", "2", "--profile", str(ROOT / "profiles" / "local"))
    summary = json.loads((workdir / "results" / "runs" / key / "summary.json").read_text())
    assert summary["budgets"] == {"macs": 0.5} and summary["macs_pct"] == pytest.approx(100 * summary["eval_macs"])
    started = json.loads((workdir / "results" / "runs" / warm / "hparams.json").read_text())
    assert (
        started["pretrained"].endswith(dense) and started["droprate_init"] == 0.05 and started["target_anneal"] == 0.3
    )
    (runs_csv,) = (workdir / "results").rglob("runs.csv")
    assert key in runs_csv.read_text() and warm in runs_csv.read_text()
    assert "budget" in runs_csv.read_text().splitlines()[0]
    (compress_png,) = (workdir / "results").rglob("compress.png")
    assert compress_png.stat().st_size > 10_000  # drawn, not the "no warm-start runs" placeholder
    mirrored = {run.data.tags["run_key"]: run for run in mlflow_runs(workdir, experiment="ctrlsparse-budget")}
    assert set(mirrored) == {key, warm, dense} and "expected_macs" in mirrored[key].data.metrics
