"""The real workflow through Snakemake: lint, and a tiny run (smoke preset: 3 train jobs, 2 epochs) into a
temporary directory that must produce tables, figures, the PDF, MLflow runs, and no duplicates on a rerun.

The first run takes ~40 s on 2 idle cores (mostly per-job imports); the rerun + HTML report is marked slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SMOKE = ROOT / "workflow" / "presets" / "smoke.yaml"
SMOKE_KEYS = [
    "digits/mlp/constrained-model~0.5/seed~0",
    "digits/mlp/penalized-model~0.01/seed~0",
    "digits/mlp/dense~1/seed~0",
    "digits/mlp/magnitude-layer~0.5/seed~0",
]


def snakemake(workdir: Path, *args: str, timeout: int = 540) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def mlflow_runs(workdir: Path, deleted: bool = False, experiment: str = "ctrlsparse-smoke") -> list:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'results' / 'mlflow' / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    view = ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
    return client.search_runs([found.experiment_id], run_view_type=view, max_results=1000)


def test_lint_is_clean():
    result = subprocess.run([str(SNAKEMAKE), "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
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
    for name in ("runs.csv", "settings.csv", "layers.csv", "tables.md"):
        assert (results / "tables" / name).stat().st_size > 0
    # 2 epochs (24 steps) cannot close the gates to 0.5: the run says it missed, and the grid still completes
    missed = json.loads((results / "runs" / SMOKE_KEYS[0] / "summary.json").read_text())
    assert (
        missed["feasible"] is False
        and "target missed: model at" in (results / "logs" / "train" / f"{SMOKE_KEYS[0]}.log").read_text()
    )
    assert "Missed targets in 1 of 1 constrained settings" in (results / "tables" / "tables.md").read_text()
    assert len((results / "tables" / "runs.csv").read_text().splitlines()) == 1 + len(SMOKE_KEYS)
    figures = sorted(p.name for p in (results / "plots").glob("*.png"))
    assert figures == sorted(
        [
            "control.png",
            "accuracy_vs_density.png",
            "accuracy_vs_size.png",
            "penalty_vs_density.png",
            "layer_density.png",
            "dynamics.png",
            "budget_control.png",
        ]
    )
    pdf = (results / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
    assert "experiment: ctrlsparse-smoke" in (results / "config.yaml").read_text()


def test_smoke_run_mirrors_every_run_to_mlflow_with_tags(smoke_run):
    runs = mlflow_runs(smoke_run)
    assert sorted(r.data.tags["run_key"] for r in runs) == sorted(SMOKE_KEYS)
    for run in runs:
        tags = run.data.tags
        assert tags["mlflow.runName"] == tags["run_key"]
        assert {"dataset", "arch", "method", "variant", "level", "seed", "git_commit", "hparams_hash"} <= set(tags)
        assert run.data.params["epochs"] == "2"
        assert run.data.metrics["params_pct"] > 0  # added by the purge job, which mirrors the run again


@pytest.mark.slow
def test_rerun_replaces_mlflow_runs_without_duplicates_and_builds_the_html_report(smoke_run):
    before = {r.data.tags["run_key"]: r.info.run_id for r in mlflow_runs(smoke_run)}
    snakemake(smoke_run, "--configfile", str(SMOKE), "--cores", "2", "--forcerun", "train")
    after = mlflow_runs(smoke_run, deleted=True)
    assert sorted(r.data.tags["run_key"] for r in after) == sorted(SMOKE_KEYS)
    assert not set(before.values()) & {r.info.run_id for r in after}  # replaced, not duplicated
    snakemake(smoke_run, "--configfile", str(SMOKE), "--report", "report.html")
    html = (smoke_run / "report.html").read_text()
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


def test_a_budget_grid_trains_purges_and_tabulates_its_runs(tmp_path):
    """grid.constrained.budgets: one run per budget (no density target) through train, purge, tables and report."""
    config = tmp_path / "budget.yaml"
    config.write_text(
        "experiment: ctrlsparse-budget\ngrid:\n  archs: [mlp]\n  seeds: [0]\n"
        "  constrained: {scopes: [model], targets: [], budgets: ['macs=0.5']}\n"
        "  penalized: {penalties: []}\n  magnitude: {targets: []}\n  dense: false\nhparams: {epochs: 30}\n"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake(workdir, "--configfile", str(config), "--cores", "2", "--profile", str(ROOT / "profiles" / "local"))
    key = "digits/mlp/constrained-budget~macs=0.5/seed~0"
    summary = json.loads((workdir / "results" / "runs" / key / "summary.json").read_text())
    assert summary["budgets"] == {"macs": 0.5} and summary["macs_pct"] == pytest.approx(100 * summary["eval_macs"])
    runs_csv = (workdir / "results" / "tables" / "runs.csv").read_text()
    assert key in runs_csv and "budget" in runs_csv.splitlines()[0]
    assert [r.data.tags["run_key"] for r in mlflow_runs(workdir, experiment="ctrlsparse-budget")] == [key]
