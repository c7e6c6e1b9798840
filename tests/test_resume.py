"""A killed run resumes from its last checkpoint and ends exactly where an uninterrupted run ends (CPU)."""

import json

import pytest
import torch

from ctrlsparse.hparams import HParams
from ctrlsparse.plumbing import paths
from ctrlsparse.plumbing.files import read_checkpoint
from ctrlsparse.training.loop import train


class Killed(Exception):
    pass


def kill_after(epoch):
    def hook(row, epochs):
        if row["epoch"] == epoch:
            raise Killed

    return hook


def comparable(rows):
    return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in rows]


@pytest.mark.parametrize(
    "overrides", [{"arch": "mlp"}, {"arch": "cnn", "dual_optimizer": "nupi", "target_scope": "layer"}]
)
def test_resumed_run_equals_uninterrupted_run(tmp_path, overrides):
    hparams = HParams.resolve(epochs=4, target=(0.4,), checkpoint_seconds=0, **overrides)
    straight = train(hparams, tmp_path / "straight", on_epoch=None)
    with pytest.raises(Killed):
        train(hparams, tmp_path / "killed", on_epoch=kill_after(2))
    assert not paths.summary_path(tmp_path / "killed").exists()
    assert read_checkpoint(paths.checkpoint_path(tmp_path / "killed"))["epoch"] == 2
    torch.manual_seed(12345)  # a resumed process starts from another RNG state; the checkpoint must restore it
    resumed = train(hparams, tmp_path / "killed", on_epoch=None)
    for key in ("expected_density", "eval_density", "test_accuracy", "test_loss", "train_loss", "multipliers"):
        assert resumed[key] == straight[key], key
    rows = json.loads(json.dumps(read_checkpoint(paths.checkpoint_path(tmp_path / "killed"))["rows"]))
    straight_rows = read_checkpoint(paths.checkpoint_path(tmp_path / "straight"))["rows"]
    assert comparable(rows) == comparable(straight_rows)


def test_checkpoint_of_other_hyperparameters_is_not_resumed(tmp_path):
    train(HParams.resolve(epochs=1, target=(0.4,)), tmp_path, on_epoch=None)
    summary = train(HParams.resolve(epochs=2, target=(0.6,)), tmp_path, on_epoch=None)
    assert summary["epochs"] == 2 and summary["target"] == [0.6]


def test_checkpoint_of_another_architecture_is_not_resumed(tmp_path):
    train(HParams.resolve(epochs=1, arch="mlp"), tmp_path, on_epoch=None)
    state = read_checkpoint(paths.checkpoint_path(tmp_path))
    state["model"] = {"other.weight": torch.zeros(3)}  # what an older version of the model code saved
    torch.save(state, paths.checkpoint_path(tmp_path))
    assert train(HParams.resolve(epochs=1, arch="mlp"), tmp_path, on_epoch=None)["epochs"] == 1
