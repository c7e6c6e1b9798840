"""Kills and preemption: a `ctrlsparse train` process is SIGKILLed mid-run, rerun, SIGTERMed (what SLURM sends
before preemption or the time limit), rerun again, and must end exactly where an uninterrupted run ends (CPU),
with one MLflow run that continued under the same id. The same kill, then a rerun, through Snakemake."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest
from reliability import (
    FINAL,
    FLAGS,
    ROOT,
    kill,
    metric_steps,
    one_run_config,
    pids_of_train_jobs,
    run_mlflow_runs,
    snakemake,
    snakemake_command,
    start_train,
    text,
    wait_for,
)

from ctrlsparse import tracking
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import read_checkpoint
from ctrlsparse.training import cli
from ctrlsparse.training.cli import EXIT_TERMINATED
from ctrlsparse.training.loop import train

pytest.importorskip("mlflow")
KEY = run_key(HParams.resolve(target=(0.4,), epochs=60))  # FLAGS, and the grid of one run below


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run (in this process: same code, same CPU, one thread)."""
    hparams = HParams.resolve(arch="mlp", target=(0.4,), epochs=60, threads=1, seed=0)
    out = tmp_path_factory.mktemp("straight")
    return train(hparams, out, on_epoch=None), read_checkpoint(paths.checkpoint_path(out))["rows"]


def comparable(rows):
    return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]


def checkpoint_epoch(out):
    return read_checkpoint(paths.checkpoint_path(out))["epoch"] if paths.checkpoint_path(out).exists() else 0


def assert_same_as_straight(out, straight):
    summary, rows = json.loads(paths.summary_path(out).read_text()), read_checkpoint(paths.checkpoint_path(out))["rows"]
    for key in FINAL:
        assert summary[key] == straight[0][key], key
    assert comparable(rows) == comparable(straight[1])


def test_sigterm_saves_the_checkpoint_at_the_end_of_the_epoch_and_exits_143(tmp_path, straight):
    out, log = tmp_path / "run", tmp_path / "train.log"
    job = start_train(out, *FLAGS, "--checkpoint-seconds", "1000", log=log)  # no timed checkpoint comes
    wait_for(lambda: "epoch    3/60" in text(log), "the third epoch (progress is printed every 3)", job)
    kill(job.pid, signal.SIGTERM)
    assert job.wait(60) == EXIT_TERMINATED, text(log)
    stopped = int(re.search(r"stopped after epoch (\d+) of 60; checkpoint saved", text(log))[1])
    assert 3 <= checkpoint_epoch(out) == stopped < 60 and not paths.summary_path(out).exists()
    hparams = HParams.resolve(arch="mlp", target=(0.4,), epochs=60, threads=1, seed=0)
    train(hparams, out, on_epoch=None)  # the rerun, in this process
    assert_same_as_straight(out, straight)


@pytest.mark.slow
def test_sigkill_then_sigterm_then_rerun_ends_like_an_uninterrupted_run_in_one_mlflow_run(tmp_path, straight):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # created by the first job
    out, log = tmp_path / "run", tmp_path / "train.log"
    flags = [*FLAGS, "--mlflow-uri", uri, "--mlflow-experiment", "resume"]

    # 1. SIGKILL (OOM killer, node failure) as soon as a checkpoint exists: every epoch checkpoints here.
    job = start_train(out, *flags, "--checkpoint-seconds", "0", log=log)
    wait_for(lambda: checkpoint_epoch(out) >= 1, "the first checkpoint", job)
    kill(job.pid, signal.SIGKILL)
    assert job.wait(30) == -signal.SIGKILL
    killed_at = checkpoint_epoch(out)
    assert 1 <= killed_at < 60 and not paths.summary_path(out).exists()
    run_id = tracking.read_record(out)["run_id"]
    assert [r.info.status for r in run_mlflow_runs(uri, "resume")] == ["RUNNING"]

    # 2. Rerun; once it trains again, SIGTERM: it finishes the epoch, saves (no timed checkpoint would come
    # for 1000 s) and exits 143.
    job = start_train(out, *flags, "--checkpoint-seconds", "1000", log=log)
    wait_for(lambda: re.search(r"after epoch \d+\n(.*\n)*epoch ", text(log)), "training after the resume", job)
    kill(job.pid, signal.SIGTERM)
    assert job.wait(60) == EXIT_TERMINATED, text(log)
    assert f"resuming from the checkpoint after epoch {killed_at}" in text(log)
    stopped = re.search(r"stopped after epoch (\d+) of 60; checkpoint saved", text(log))
    assert stopped, text(log)
    assert killed_at < checkpoint_epoch(out) == int(stopped[1]) < 60
    assert len(paths.metrics_path(out).read_text().splitlines()) == 1 + int(stopped[1])
    assert [(r.info.run_id, r.info.status) for r in run_mlflow_runs(uri, "resume")] == [(run_id, "KILLED")]

    # 3. Rerun to the end (the CLI in this process: one interpreter start less): same numbers as the
    # uninterrupted run, same MLflow run, FINISHED, every epoch logged once.
    assert cli.main([*flags, "--quiet", "--out", str(out)]) == 0
    assert_same_as_straight(out, straight)
    assert [(r.info.run_id, r.info.status) for r in run_mlflow_runs(uri, "resume")] == [(run_id, "FINISHED")]
    assert metric_steps(uri, run_id, "train_loss") == list(range(1, 61))


@pytest.mark.slow
def test_a_train_job_killed_under_snakemake_resumes_when_snakemake_reruns_it(tmp_path, straight):
    config = one_run_config(tmp_path, epochs=60, checkpoint_seconds=0)
    target = f"results/runs/{KEY}/summary.json"
    args = ["--configfile", str(config), "--cores", "1", "--profile", str(ROOT / "profiles" / "local"), target]
    out, log = tmp_path / "results" / "runs" / KEY, tmp_path / "snakemake.log"
    with open(log, "w") as handle:
        first = subprocess.Popen(snakemake_command(tmp_path, *args), stdout=handle, stderr=subprocess.STDOUT)
    wait_for(lambda: checkpoint_epoch(out) >= 1, "the job's first checkpoint", first, timeout=240)
    for pid in pids_of_train_jobs(tmp_path):
        kill(pid, signal.SIGKILL)
    assert first.wait(120) != 0  # Snakemake saw the job fail ...
    assert "Error in rule train" in text(log) and KEY in text(log)
    assert not paths.summary_path(out).exists()
    killed_at = checkpoint_epoch(out)
    assert 1 <= killed_at < 60

    rerun = snakemake(tmp_path, *args)  # ... and the rerun resumes the job instead of starting over
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    job_log = tmp_path / "results" / "logs" / "train" / f"{KEY}.log"
    assert f"resuming from the checkpoint after epoch {killed_at}" in text(job_log)
    assert_same_as_straight(out, straight)
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow' / 'mlflow.db'}"
    runs = run_mlflow_runs(uri, "reliability")
    assert [(r.info.run_id, r.info.status) for r in runs] == [(tracking.read_record(out)["run_id"], "FINISHED")]
