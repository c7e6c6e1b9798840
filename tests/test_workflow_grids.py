"""Two grids in one project directory through the real Snakemake CLI: a second grid (another experiment, other
epochs) lists and trains its own runs, leaves the first grid's runs and report untouched, and each report's
tables hold only its grid's runs; a third grid, tracked in another MLflow store, trains only the run it does not
share with the first (same key) and copies the shared one into its experiment without touching its directory;
the first grid under another tracking setting has nothing to train.

About 3-5 minutes on 2 busy cores (three real runs: 2, 2 and 1 train jobs): marked slow."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
import yaml
from workflow_cli import ROOT, runs_of, snakemake, train_jobs

pytestmark = pytest.mark.slow

TINY = {  # 2 train jobs: constrained model-wise 0.5 and dense, MLP, seed 0
    "grid": {
        "archs": ["mlp"],
        "seeds": [0],
        "constrained": {"scopes": ["model"], "targets": [0.5]},
        "penalized": {"penalties": []},
        "dense": True,
        "magnitude": {"targets": []},
    },
    "hparams": {"epochs": 2},
}
FIRST = {**TINY, "experiment": "grid-a"}
SECOND = {**TINY, "experiment": "grid-b", "hparams": {"epochs": 3}}  # like a preset after the demo
THIRD = {  # the first grid's constrained run with one more seed, tracked in another store
    **TINY,
    "experiment": "grid-c",
    "grid": {**TINY["grid"], "seeds": [0, 1], "dense": False},
    "mlflow": {"tracking_uri": "sqlite:///elsewhere.db"},  # relative to the project directory
}
PROFILE = ("--cores", "2", "--profile", str(ROOT / "profiles" / "local"))


def config_file(directory: Path, config: dict, name: str = "") -> str:
    path = directory / f"{name or config['experiment']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def keys(config: dict) -> list[str]:
    return [run.key for run in runs_of(config)]


def snapshot(paths: list[Path]) -> dict[str, tuple[int, str]]:
    """(mtime in ns, sha256) of every file under ``paths``."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest()) for f in files}


def table_keys(results: Path, experiment: str) -> list[str]:
    with open(results / experiment / "tables" / "runs.csv", newline="") as handle:
        return sorted(row["run_key"] for row in csv.DictReader(handle))


def mlflow_keys(store: Path, experiment: str) -> list[str]:
    """Run keys of the finished runs of an experiment in a SQLite store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return sorted(run.data.tags["run_key"] for run in runs if run.info.status == "FINISHED")


def test_a_second_grid_trains_beside_the_first_and_a_third_reuses_the_run_it_shares(tmp_path):
    project, results = tmp_path / "project", tmp_path / "project" / "results"
    project.mkdir()
    first, second, third = (config_file(tmp_path, c) for c in (FIRST, SECOND, THIRD))
    assert not set(keys(FIRST)) & set(keys(SECOND))  # other epochs: other runs

    snakemake(project, "--configfile", first, *PROFILE)
    before = snapshot([results / "runs", results / "grid-a"])
    assert len([f for f in before if f.endswith("summary.json")]) == 2

    assert train_jobs(snakemake(project, "--configfile", second, "-n", "--quiet", "rules")) == 2
    snakemake(project, "--configfile", second, *PROFILE)
    after = snapshot([results / "runs", results / "grid-a"])
    assert {path: after[path] for path in before} == before  # the first grid's runs and report: not touched
    assert table_keys(results, "grid-a") == sorted(keys(FIRST))
    assert table_keys(results, "grid-b") == sorted(keys(SECOND))
    for experiment in ("grid-a", "grid-b"):
        assert (results / experiment / "report.pdf").read_bytes().startswith(b"%PDF")
        assert f"experiment: {experiment}" in (results / experiment / "config.yaml").read_text()
    store = results / "mlflow" / "mlflow.db"
    assert mlflow_keys(store, "grid-a") == sorted(keys(FIRST)) and mlflow_keys(store, "grid-b") == sorted(keys(SECOND))

    nothing = snakemake(project, "--configfile", first, "-n")
    assert "Nothing to be done" in nothing.stdout + nothing.stderr
    untracked = config_file(tmp_path, {**FIRST, "mlflow": {"enabled": False}}, "untracked")
    retracked = snakemake(project, "--configfile", untracked, "-n", "--quiet", "rules")
    assert train_jobs(retracked) == 0  # another tracking setting: the finished runs stay finished
    reused = set(keys(THIRD)) & set(keys(FIRST))
    assert len(reused) == 1 and next(iter(reused)).endswith("/seed~0")
    assert train_jobs(snakemake(project, "--configfile", third, "-n", "--quiet", "rules")) == 1  # seed 1 only
    snakemake(project, "--configfile", third, *PROFILE)
    final = snapshot([results / "runs", results / "grid-a"])
    assert {path: final[path] for path in before} == before  # the reused run too: copied, not rewritten
    assert table_keys(results, "grid-c") == sorted(keys(THIRD))
    assert mlflow_keys(project / "elsewhere.db", "grid-c") == sorted(keys(THIRD))  # the reused run copied in
