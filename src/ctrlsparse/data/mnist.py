"""MNIST from torchvision's on-disk files: ``<root>/MNIST/raw/*-idx?-ubyte`` (plain or ``.gz``).

paper.md §5: no augmentation; normalised with mean 0.1307 and std 0.3081. Kept on the training device.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ctrlsparse.data.download import ensure
from ctrlsparse.data.images import ImageTensors
from ctrlsparse.data.layouts import fail, locate

MEAN, STD = (0.1307,), (0.3081,)
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file (big-endian: magic, then one int32 per dimension, then uint8 data), plain or gzipped."""
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = magic & 0xFF
    header = np.frombuffer(raw[: 4 * (ndim + 1)], dtype=">i4") if len(raw) >= 4 * (ndim + 1) else None
    if header is None or header[0] != magic:
        raise fail("mnist", path, f"is not an idx file with magic number {magic}")
    shape = tuple(int(d) for d in header[1:])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (ndim + 1))
    if data.size != int(np.prod(shape)):
        raise fail("mnist", path, f"holds {data.size} bytes of data, but its header says {shape}")
    return data.reshape(shape)


def read_split(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte", IMAGES_MAGIC)
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte", LABELS_MAGIC)
    if len(images) != len(labels) or labels.max(initial=0) > 9:
        raise fail("mnist", folder / f"{prefix}-labels-idx1-ubyte", "does not match its images (count or labels 0-9)")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_mnist(root: Path, download: bool = False, workers: int = 0) -> ImageTensors:
    """Images (1, 28, 28) uint8 (normalised per batch), labels 0-9."""
    ensure("mnist", root, download)
    folder = locate("mnist", root)
    train_x, train_y = read_split(folder, "train")
    test_x, test_y = read_split(folder, "t10k")
    return ImageTensors(train_x, train_y, test_x, test_y, 10, mean=MEAN, std=STD)
