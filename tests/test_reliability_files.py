"""Bad files in a run directory get one line, not a traceback, each through the real CLI: a truncated
checkpoint (the run falls back to the previous one, or starts afresh, and says so), a second `ctrlsparse train`
on a directory another process trains (it stops at once naming the first's pid), and a corrupt summary.json
(`ctrlsparse aggregate` names it; the workflow moves it aside and reruns that run from its checkpoint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from reliability import FLAGS, ROOT, job_env, one_run_config, snakemake, start_train, text, wait_for

from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import read_checkpoint
from ctrlsparse.training import cli
from ctrlsparse.training.cli import EXIT_BUSY, EXIT_TERMINATED

QUICK = ["--arch", "mlp", "--target", "0.4", "--threads", "1", "--seed", "0", "--quiet"]


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def train_in_process(out, epochs, capsys, *flags):
    code = cli.main([*QUICK, "--epochs", str(epochs), *flags, "--out", str(out)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_each_save_keeps_the_previous_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_in_process(out, 3, capsys, "--checkpoint-seconds", "0")[0] == 0
    assert read_checkpoint(paths.checkpoint_path(out))["epoch"] == 3
    assert read_checkpoint(paths.previous_checkpoint_path(out))["epoch"] == 2


def test_purging_a_run_whose_final_checkpoint_is_truncated_is_one_line(tmp_path, capsys):
    from ctrlsparse.training import purge_cli

    out = tmp_path / "run"
    assert train_in_process(out, 2, capsys, "--checkpoint-seconds", "0")[0] == 0
    truncate(paths.checkpoint_path(out))
    with pytest.raises(SystemExit) as stopped:
        purge_cli.main([str(out), "--threads", "1"])
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == (
        f"ctrlsparse purge: error: {out}: {paths.checkpoint_path(out)} does not hold the finished run; "
        "delete summary.json and rerun its train job"
    )
    assert "moved aside to checkpoint.pt.corrupt; resuming from checkpoint.prev.pt (epoch 1)" in lines[0]


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_in_process(out, 3, capsys, "--checkpoint-seconds", "0")[0] == 0
    straight = json.loads(paths.summary_path(out).read_text())
    paths.summary_path(out).unlink()
    truncate(paths.checkpoint_path(out))
    code, lines = train_in_process(out, 3, capsys, "--checkpoint-seconds", "0")
    assert code == 0
    notes = [line for line in lines if line.startswith("ctrlsparse: ")]
    assert notes[0] == (
        f"ctrlsparse: {paths.checkpoint_path(out)} is not a complete checkpoint archive (truncated?); "
        "moved aside to checkpoint.pt.corrupt; resuming from checkpoint.prev.pt (epoch 2)"
    )
    assert "resuming from the checkpoint after epoch 2" in notes[1] and len(notes) == 2
    assert paths.corrupt_path(paths.checkpoint_path(out)).exists()
    resumed = json.loads(paths.summary_path(out).read_text())
    for key in ("expected_density", "eval_density", "test_accuracy", "train_loss", "multipliers"):
        assert resumed[key] == straight[key], key  # epoch 3 trained again from epoch 2's state: same numbers
    assert (
        read_checkpoint(paths.checkpoint_path(out))["epoch"] == 3
        and read_checkpoint(paths.previous_checkpoint_path(out))["epoch"] == 2
    )


def test_no_readable_checkpoint_restarts_the_run_and_says_so(tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(
        [sys.executable, "-m", "ctrlsparse", "train", *QUICK, "--epochs", "2", "--checkpoint-seconds", "0"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        env=job_env(),
    )
    assert first.returncode == 0, first.stderr
    paths.summary_path(out).unlink()
    truncate(paths.checkpoint_path(out), 0.3)
    truncate(paths.previous_checkpoint_path(out), 0.9)
    again = subprocess.run(
        [sys.executable, "-m", "ctrlsparse", "train", *QUICK, "--epochs", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        env=job_env(),
    )
    assert again.returncode == 0, again.stderr
    (line,) = [line for line in again.stderr.splitlines() if line.startswith("ctrlsparse: ")]
    assert line.startswith(f"ctrlsparse: {paths.checkpoint_path(out)} is not a complete checkpoint archive")
    assert line.endswith(
        "checkpoint.prev.pt is not a complete checkpoint archive (truncated?); starting the run afresh"
    )
    assert "Traceback" not in again.stderr and json.loads(paths.summary_path(out).read_text())["epochs"] == 2


def test_a_second_train_on_the_same_directory_stops_at_once_naming_the_first(tmp_path):
    # 600 epochs: the first must still train while the second starts (~5 s of imports); 60 epochs of the digits
    # MLP ran out in that time on a fast machine and the SIGTERM then met the run's natural end.
    flags = [*FLAGS[: FLAGS.index("--epochs")], "--epochs", "600", *FLAGS[FLAGS.index("--epochs") + 2 :]]
    out, log, again = tmp_path / "run", tmp_path / "first.log", tmp_path / "rerun.log"
    first = start_train(out, *flags, "--checkpoint-seconds", "1000", log=log)
    try:
        wait_for(lambda: "epoch   30/600" in text(log), "the first process to train", first)
        second = subprocess.run(
            [sys.executable, "-m", "ctrlsparse", "train", *flags, "--out", str(out)],
            capture_output=True,
            text=True,
            env=job_env(),
            timeout=120,
        )
        assert first.poll() is None  # the first still trains
        assert second.returncode == EXIT_BUSY == 75
        assert second.stderr == (
            f"ctrlsparse train: error: {out} is being trained by another process (pid {first.pid}, lock "
            f"{paths.train_lock_path(out)}); let it finish or stop it, then rerun\n"
        )
        os.kill(first.pid, signal.SIGTERM)  # SIGTERM still saves and exits 143 ...
        assert first.wait(60) == EXIT_TERMINATED, text(log)
    finally:
        if first.poll() is None:
            first.kill()
    # ... and the lock went with the process: a rerun takes the directory and resumes from that checkpoint.
    rerun = start_train(out, *flags, log=again)
    try:
        wait_for(lambda: "resuming from the checkpoint after epoch" in text(again), "the rerun to resume", rerun)
        os.kill(rerun.pid, signal.SIGTERM)
        assert rerun.wait(60) == EXIT_TERMINATED, text(again)
    finally:
        if rerun.poll() is None:
            rerun.kill()


def test_a_killed_trainer_leaves_no_stale_lock(tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "first.log"
    first = start_train(out, *FLAGS, "--checkpoint-seconds", "0", log=log)
    wait_for(lambda: paths.checkpoint_path(out).exists(), "the first checkpoint", first)
    first.kill()
    first.wait(30)
    assert paths.train_lock_path(out).read_text().strip() == str(first.pid)  # the file stays, the lock does not
    assert cli.main([*FLAGS, "--quiet", "--out", str(out)]) == 0


def test_aggregate_names_a_corrupt_summary_in_one_line(tmp_path):
    runs = tmp_path / "runs"
    good, bad = runs / "a", runs / "b"
    for run in (good, bad):
        run.mkdir(parents=True)
    paths.summary_path(good).write_text(json.dumps({"run_key": "a", "method": "dense"}))
    paths.summary_path(bad).write_text('{"run_key": "b", "test_accur')
    result = subprocess.run(
        [sys.executable, "-m", "ctrlsparse", "aggregate", str(runs), "--out", str(tmp_path / "tables")],
        capture_output=True,
        text=True,
        env=job_env(),
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"ctrlsparse aggregate: error: {paths.summary_path(bad)} is not valid JSON (")


@pytest.mark.slow
def test_the_workflow_moves_a_corrupt_summary_aside_and_reruns_that_run_from_its_checkpoint(tmp_path):
    config = one_run_config(tmp_path, mlflow=False, epochs=3)
    args = ["--configfile", str(config), "--cores", "1", "--profile", str(ROOT / "profiles" / "local")]
    first = snakemake(tmp_path, *args)
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    (summary,) = (tmp_path / "results").rglob(paths.SUMMARY)
    before = json.loads(summary.read_text())
    report = next((tmp_path / "results").rglob("report.pdf"))
    built = report.stat().st_mtime_ns
    truncate(summary)

    rerun = snakemake(tmp_path, *args)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    output = rerun.stdout + rerun.stderr
    aside = paths.corrupt_path(summary)
    assert f"ctrlsparse: {summary.relative_to(tmp_path)} is not valid JSON (" in output
    assert f"moved it to {aside.name}, so that run's train job reruns" in output
    assert "rule train:" in output and "Traceback" not in output
    after = json.loads(summary.read_text())
    for key in ("expected_density", "test_accuracy", "params_pct"):
        assert after[key] == before[key], key  # from the checkpoint of the finished run, not retrained
    log = next((tmp_path / "results" / "logs" / "train").rglob("*.log")).read_text()
    assert "epoch " not in log.replace("epochs", "")  # no epoch trained again
    assert aside.exists() and report.stat().st_mtime_ns > built
