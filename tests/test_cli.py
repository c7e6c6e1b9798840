"""``ctrlsparse train`` end to end on digits, and its one-line answers to bad flags."""

import json
import math
import subprocess
import sys

import pytest

from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.plumbing import paths

SUMMARY_KEYS = {
    "expected_density",
    "eval_density",
    "test_accuracy",
    "layer_expected_density",
    "multipliers",
    "epochs",
    "wall_seconds",
    "run_key",
    "layer_eval_density",
    "violations",
    "sparsifiable_params",
}


def ctrlsparse(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ctrlsparse", *args], capture_output=True, text=True, **kwargs)


def test_train_writes_the_run_files(tmp_path):
    out = tmp_path / "run"
    result = ctrlsparse(
        "train",
        "--dataset",
        "digits",
        "--arch",
        "cnn",
        "--method",
        "constrained",
        "--target",
        "0.5",
        "--target-scope",
        "layer",
        "--seed",
        "1",
        "--epochs",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "epoch    2/2" in result.stderr
    summary = json.loads(paths.summary_path(out).read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["epochs"] == 2 and summary["run_key"] == run_key(
        HParams.resolve(arch="cnn", target_scope="layer", seed=1, epochs=2)
    )
    assert set(summary["layer_expected_density"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert set(summary["multipliers"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert all(math.isfinite(value) for value in summary["multipliers"].values())  # eq (digits): either sign
    for key in ("expected_density", "eval_density", "test_accuracy"):
        assert 0.0 <= summary[key] <= 1.0
    hparams = json.loads(paths.hparams_path(out).read_text())
    assert hparams["target"] == [0.5] and hparams["gates_lr"] > 0 and hparams["run_key"] == summary["run_key"]
    lines = paths.metrics_path(out).read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch,train_loss,test_loss,test_accuracy,expected_density")
    assert "multiplier/conv1" in lines[0] and "violation/fc2" in lines[0]
    assert paths.checkpoint_path(out).stat().st_size > 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--dataset", "cifar1000"], "--dataset: unknown dataset 'cifar1000'"),
        (["--arch", "vgg"], "--arch: unknown arch 'vgg'"),
        (["--method", "magic"], "--method: unknown method 'magic'"),
        (["--target", "1.5"], "--target: 1.5 is outside (0, 1]"),
        (["--target", "0"], "--target: 0 is outside (0, 1]"),
        (["--target", "-0.2"], "--target: -0.2 is outside (0, 1]"),
        (["--epochs", "-3"], "--epochs: -3 must be a positive integer"),
        (["--target", "abc"], "argument --target: expected comma-separated floats"),
    ],
)
def test_bad_flags_exit_2_with_one_line_naming_the_flag(tmp_path, flags, named):
    result = ctrlsparse("train", "--out", str(tmp_path / "run"), *flags)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()  # nothing was started


def test_layerwise_target_list_of_the_wrong_length(tmp_path):
    result = ctrlsparse(
        "train", "--out", str(tmp_path / "r"), "--target", "0.5,0.4", "--target-scope", "layer", "--epochs", "1"
    )
    assert result.returncode == 2
    assert "--target: 2 layer-wise targets given, but arch 'mlp' has 3 gated layers" in result.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_subcommand():
    result = ctrlsparse("trian")
    assert result.returncode == 2 and "unknown subcommand 'trian'" in result.stderr
