"""Magnitude pruning (paper.md §3): the largest-L1 groups of the dense run at the per-layer density, fixed gates,
fine-tuning, then the purge; and the one-line answers to a missing or mismatched dense run."""

from __future__ import annotations

import json

import pytest
import torch

from ctrlsparse.errors import HParamError
from ctrlsparse.hparams import HParams
from ctrlsparse.identity import run_key
from ctrlsparse.layers import gated_layers
from ctrlsparse.plumbing.files import read_checkpoint
from ctrlsparse.problems.magnitude import FIXED_LOG_ALPHA, group_l1_norms, keep_largest
from ctrlsparse.training.loop import train
from ctrlsparse.training.purge_cli import purge_run
from ctrlsparse.training.setup import build_run


def test_keep_largest_keeps_the_rounded_share_and_at_least_one():
    norms = torch.tensor([0.5, 3.0, 1.0, 2.0])
    assert keep_largest(norms, 0.5).tolist() == [False, True, False, True]
    assert keep_largest(norms, 0.01).tolist() == [False, True, False, False]
    assert keep_largest(norms, 1.0).all()


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "run"
    train(HParams.resolve(arch="cnn", method="dense", epochs=3, device="cpu"), out, None)
    return out


def magnitude(dense_run, **given):
    defaults = {"arch": "cnn", "method": "magnitude", "target_scope": "layer", "device": "cpu"}
    return HParams.resolve(**{**defaults, "pretrained": str(dense_run), **given})


def test_pruning_keeps_the_largest_filters_and_neurons_of_the_dense_weights(dense_run):
    hparams = magnitude(dense_run, target=(0.5, 0.25, 0.5, 0.3))
    run = build_run(hparams)
    dense = read_checkpoint(dense_run / "checkpoint.pt")["model"]
    for (name, layer), target in zip(gated_layers(run.model), hparams.target, strict=True):
        assert torch.equal(layer.weight, dense[f"{name}.weight"])
        keep = layer.log_alpha == FIXED_LOG_ALPHA
        assert int(keep.sum()) == round(target * layer.n_gates)
        assert group_l1_norms(layer)[keep].min() >= group_l1_norms(layer)[~keep].max()
        assert not layer.log_alpha.requires_grad
    layer.train()
    assert set(layer.gates().unique().tolist()) <= {0.0, 1.0}  # training samples are exactly 0 or 1


def test_magnitude_run_end_to_end_fine_tunes_with_fixed_gates_and_purges(dense_run, tmp_path):
    hparams = magnitude(dense_run, target=(0.5,), epochs=2)
    assert (hparams.optimizer, hparams.lr) == ("adam", 1e-3)  # the digits fine-tuning recipe
    out = tmp_path / "magnitude"
    summary = train(hparams, out, None)
    dense_key = json.loads((dense_run / "summary.json").read_text())["run_key"]
    assert summary["run_key"] == run_key(hparams, dense_key)  # named by the dense run it prunes
    assert summary["run_key"].startswith("digits/cnn/magnitude-layer~0.5/")
    assert summary["layer_eval_density"] == {"conv1": 0.5, "conv2": 0.5, "fc1": 0.5, "fc2": 0.5}
    assert summary["expected_density"] == pytest.approx(0.5, abs=1e-5)
    sizes = purge_run(out)
    assert sizes["purged_test_accuracy"] == summary["test_accuracy"]
    assert sizes["params_pct"] < 50


def test_a_missing_or_mismatched_dense_run_is_one_clear_error(dense_run, tmp_path):
    with pytest.raises(HParamError, match="pretrained: .* holds no finished run"):
        build_run(magnitude(tmp_path / "nowhere", target=(0.5,)))
    with pytest.raises(HParamError, match="give a dense run of digits/mlp"):
        build_run(magnitude(dense_run, target=(0.5,), arch="mlp"))
    with pytest.raises(HParamError, match="target_scope"):
        build_run(magnitude(dense_run, target=(0.5,), target_scope="model"))
