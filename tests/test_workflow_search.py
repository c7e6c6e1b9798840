"""A lambda search through the real workflow: its steps are runs with keys of their own under results/runs (the one
the grid lists itself trained by the grid's train job, first, and then found finished), it is not purged, its
steps and itself are in MLflow, and the tables and the report set it beside the constrained run of its target."""

from __future__ import annotations

import json
import re

import yaml
from pypdf import PdfReader
from test_workflow import mlflow_runs
from workflow_cli import ROOT, runs_of, snakemake

SEARCH = {
    "experiment": "search-grid",
    "grid": {
        "archs": ["mlp"],
        "seeds": [0],
        "constrained": {"scopes": ["model"], "targets": [0.5]},
        "search": {"scopes": ["model"], "targets": [0.5], "iterations": 1},
        "penalized": {"penalties": [0.001]},  # the search's first step
        "dense": False,
        "magnitude": {"targets": []},
    },
    "hparams": {"epochs": 3},
}


def test_a_search_grid_trains_its_steps_as_runs_and_tabulates_the_price_of_a_penalty(tmp_path):
    runs = {run.hparams.method: run.key for run in runs_of(SEARCH)}
    assert re.fullmatch(r"digits/mlp/search-model~0.5/[0-9a-f]{8}/seed~0", runs["search"])
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(SEARCH))
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake(workdir, "--configfile", str(config), "--cores", "2", "--profile", str(ROOT / "profiles" / "local"))
    results = workdir / "results"
    summary = json.loads((results / "runs" / runs["search"] / "summary.json").read_text())
    steps = [step["run_key"] for step in summary["search"]["steps"]]
    assert summary["runs"] == len(steps) >= 1 and steps[0] == runs["penalized"]  # lambda 0.001: the grid's run
    for key in steps:
        assert (results / "runs" / key / "summary.json").exists()
    search_log = (results / "logs" / "train" / f"{runs['search']}.log").read_text()
    assert f"{runs['penalized']}: test accuracy" not in search_log  # found finished, not trained again
    assert (results / "logs" / "train" / f"{runs['penalized']}.log").exists()  # the grid's own train job
    assert not (results / "runs" / runs["search"] / "purge.json").exists()  # no model of its own to purge
    tracked = {run.data.tags["run_key"] for run in mlflow_runs(workdir, experiment="search-grid")}
    assert {runs["search"], *steps} <= tracked
    tables = (results / "search-grid" / "tables" / "tables.md").read_text()
    assert "## The price of a penalty" in tables
    assert re.search(rf"\| digits / mlp \| model \| 0.5 \| 1 \| {len(steps)}.0 \|", tables), tables
    report = "".join(page.extract_text() for page in PdfReader(results / "search-grid" / "report.pdf").pages)
    assert "The price of a penalty" in report
