"""Divergence: plain SGD at lr 1e10 turns the digits MLP's loss into NaN in its first epoch. The run must stop
with one clear line, exit 3, end its MLflow run FAILED, and Snakemake must say which run failed."""

from __future__ import annotations

import math

import pytest
from reliability import ROOT, one_run_config, run_mlflow_runs, snakemake, text

from ctrlsparse import tracking
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.training import cli
from ctrlsparse.training.cli import EXIT_DIVERGED

pytest.importorskip("mlflow")
KEY = run_key(HParams.resolve(optimizer="sgd", lr=1e10, epochs=3, target=(0.4,)))  # as DIVERGING, and the grid below
DIVERGING = ["--optimizer", "sgd", "--lr", "1e10", "--epochs", "3", "--threads", "1", "--target", "0.4", "--quiet"]


def test_a_nan_loss_stops_the_run_with_one_line_exit_3_and_mlflow_status_failed(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    assert cli.main([*DIVERGING, "--out", str(out), "--tracking-uri", uri, "--experiment", "div"]) == EXIT_DIVERGED
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [
        f"ctrlsparse train: error: run {KEY} diverged at epoch 1: train_loss, test_loss, expected_density, "
        + errors[0].split("expected_density, ", 1)[1]
    ]
    assert "= nan; lower the learning rates (--lr, --gates-lr, --dual-lr) and rerun" in errors[0]
    assert not paths.summary_path(out).exists()
    assert "nan" in paths.metrics_path(out).read_text().splitlines()[1]  # the bad row is kept for diagnosis
    (run,) = run_mlflow_runs(uri, "div")
    assert run.info.status == "FAILED" and run.info.run_id == tracking.read_record(out)["run_id"]
    assert run.data.tags["run_key"] == KEY
    assert math.isnan(run.data.metrics["train_loss"])


def test_snakemake_names_the_diverged_run_and_fails(tmp_path):
    config = one_run_config(tmp_path, mlflow=False, epochs=3, optimizer="sgd", lr=1e10)
    result = snakemake(
        tmp_path,
        "--configfile",
        str(config),
        "--cores",
        "1",
        "--profile",
        str(ROOT / "profiles" / "local"),
        f"results/runs/{KEY}/summary.json",
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in rule train" in output and f"results/logs/train/{KEY}.log" in output
    assert f"run {KEY} diverged at epoch 1" in output  # the failed job's log, shown by the local profile
    assert f"run {KEY} diverged at epoch 1" in text(tmp_path / "results" / "logs" / "train" / f"{KEY}.log")
