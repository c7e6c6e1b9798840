"""scikit-learn's bundled ``digits``: 1,797 real 8x8 handwritten digits, the offline default data set.

Read straight from the CSV file that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``: 64 pixel
values 0..16 and the label per row) without importing scikit-learn, which would cost seconds per job.
A fixed stratified split (360 test images, seed 0) and a normalisation by the training pixels' mean and
standard deviation make every run, on every machine, see the same data.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ctrlsparse.data.base import TensorData, bundled_file

TEST_SIZE = 360
SPLIT_SEED = 0


def digits_csv() -> Path:
    return bundled_file("digits", "sklearn", "datasets/data/digits.csv.gz")


def stratified_split(labels: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each class's share of the test set proportional to its frequency."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * test_size / len(labels)
    take = np.floor(exact).astype(int)
    take[np.argsort(-(exact - take), kind="stable")[: test_size - take.sum()]] += 1
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)]
    )
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_digits(root: Path | str | None = None, download: bool = False, workers: int = 0) -> TensorData:
    """Images shaped (1, 8, 8), float32, normalised; labels int64 in 0..9. The arguments are unused (bundled)."""
    with gzip.open(digits_csv(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :64]).view(-1, 1, 8, 8)
    labels = torch.from_numpy(table[:, 64].astype(np.int64))
    train, test = (torch.from_numpy(i) for i in stratified_split(table[:, 64].astype(np.int64), TEST_SIZE, SPLIT_SEED))
    mean, std = images[train].mean(), images[train].std()
    return TensorData((images[train] - mean) / std, labels[train], (images[test] - mean) / std, labels[test], 10)
