"""Concurrent tracking: 8 processes open, log and finish their MLflow runs in one SQLite store at once (while
another writer holds the database locked for a while) and lose no run and no metric; with the tracking server
down, a train job still finishes and keeps its files."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest
from reliability import run_mlflow_runs
from synthetic import write_synthetic_run

from ctrlsparse import tracking
from ctrlsparse.plumbing import paths
from ctrlsparse.training import cli

pytest.importorskip("mlflow")
JOBS, EPOCHS = 8, 40


def job(run_dir: str, uri: str, start) -> None:
    """What a train job does with MLflow: open its run when it starts, mirror everything when it ends."""
    start.wait()
    assert tracking.open_run(run_dir, tracking_uri=uri, experiment="fanout") is not None
    cli.draw_dynamics(Path(run_dir))  # as the train job does before it mirrors
    assert tracking.mirror_run(run_dir, tracking_uri=uri, experiment="fanout") is not None


@pytest.mark.slow  # ~45 s on 2 busy cores (8 mirrors with their plots)
def test_eight_jobs_logging_to_sqlite_at_once_lose_no_run_and_no_metric(tmp_path):
    import mlflow.tracking  # imported once here (with the plot code), so the forked jobs start at once

    import ctrlsparse.report.run_plot  # noqa: F401

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    tracking.init_store(uri, "fanout")  # as the workflow's mlflow_init rule does before the fan-out
    runs = [
        write_synthetic_run(tmp_path / "runs", epochs=EPOCHS, dataset="digits", arch="mlp", seed=seed)
        for seed in range(JOBS)
    ]
    context = multiprocessing.get_context("fork")
    start = context.Event()
    jobs = [context.Process(target=job, args=(str(run), uri, start)) for run in runs]
    for process in jobs:
        process.start()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock as the jobs start
    start.set()
    time.sleep(2)
    locker.execute("COMMIT")
    for process in jobs:
        process.join(120)
    assert [process.exitcode for process in jobs] == [0] * JOBS
    found = run_mlflow_runs(uri, "fanout")
    assert sorted(r.data.tags["seed"] for r in found) == [str(seed) for seed in range(JOBS)]
    assert {r.info.status for r in found} == {"FINISHED"}
    client = mlflow.tracking.MlflowClient(uri)
    columns = paths.metrics_path(runs[0]).read_text().splitlines()[0].split(",")[1:]
    for run in found:
        for key in columns:
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, EPOCHS + 1))


def test_with_the_tracking_server_down_the_job_finishes_and_keeps_its_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    out = tmp_path / "run"
    flags = ["--epochs", "2", "--threads", "1", "--quiet", "--out", str(out), "--tracking-uri", "http://127.0.0.1:9"]
    assert cli.main(flags) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "could not open the MLflow run" in warnings[0], warnings  # one try, one line
    for path in (paths.summary_path(out), paths.metrics_path(out), paths.checkpoint_path(out)):
        assert path.stat().st_size > 0
    assert not paths.mlflow_run_path(out).exists()
