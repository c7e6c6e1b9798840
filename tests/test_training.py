"""Short in-process runs of every method and gating mode, and CPU determinism."""

import pytest

from ctrlsparse.hparams import HParams
from ctrlsparse.training.loop import train


def short(tmp_path, name, **given):
    return train(HParams.resolve(epochs=2, **given), tmp_path / name, on_epoch=None)


def test_dense_run_has_density_one_and_no_multipliers(tmp_path):
    summary = short(tmp_path, "dense", method="dense", arch="cnn")
    assert summary["expected_density"] == summary["eval_density"] == 1.0
    assert summary["multipliers"] == {} and summary["layer_expected_density"] == {}
    assert summary["sparsifiable_params"] == 0 and summary["total_params"] > 0


def test_penalized_run_has_layer_densities_but_no_multipliers(tmp_path):
    summary = short(tmp_path, "pen", method="penalized", penalty=0.1, target_scope="layer")
    assert summary["multipliers"] == {} and set(summary["layer_expected_density"]) == {"fc1", "fc2", "fc3"}
    assert 0 < summary["expected_density"] < 1


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_unstructured_gating_counts_every_weight(tmp_path, arch):
    structured = short(tmp_path, f"s-{arch}", arch=arch)
    unstructured = short(tmp_path, f"u-{arch}", arch=arch, gating="unstructured")
    assert unstructured["sparsifiable_params"] > structured["sparsifiable_params"]  # biases become gated too
    assert 0 < unstructured["expected_density"] < 1


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    first = short(tmp_path, "a", arch="cnn", seed=3)
    again = short(tmp_path, "b", arch="cnn", seed=3)
    other = short(tmp_path, "c", arch="cnn", seed=4)
    keys = ("expected_density", "test_accuracy", "train_loss", "multipliers")
    assert all(first[k] == again[k] for k in keys)
    assert first["train_loss"] != other["train_loss"]
